package delivery

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// memStore is an in-memory backends.EventStore with the contract's lease
// rules, for the reader's tests.
type memStore struct {
	mu      sync.Mutex
	events  []*backends.Event
	cursors map[string]*backends.EventCursor
	dead    []*backends.DeadLetter
}

func newMemStore() *memStore { return &memStore{cursors: map[string]*backends.EventCursor{}} }

// append writes an event of type typ for a task of namespace ns.
func (m *memStore) append(taskID int64, ns string, typ backends.EventType) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	seq := int64(len(m.events) + 1)
	m.events = append(m.events, &backends.Event{Seq: seq, Type: typ, Time: time.Now().UTC(), TaskID: taskID, Namespace: ns, Workflow: ns + "/wf"})
	return seq
}

func (m *memStore) ListEvents(_ context.Context, q *backends.EventQuery) ([]*backends.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	limit := q.Limit
	if limit == 0 {
		limit = backends.DefaultEventLimit
	}
	var out []*backends.Event
	for _, ev := range m.events {
		if ev.Seq > q.After && (q.TaskID == 0 || ev.TaskID == q.TaskID) &&
			(len(q.Namespaces) == 0 || slices.Contains(q.Namespaces, ev.Namespace)) && len(out) < limit {
			c := *ev
			out = append(out, &c)
		}
	}
	return out, nil
}

func (m *memStore) LastEventSeq(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.events)), nil
}

func (m *memStore) AcquireCursor(_ context.Context, p *backends.AcquireCursorParams) (*backends.EventCursor, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cursors[p.Name]
	if !ok {
		c = &backends.EventCursor{Name: p.Name, Seq: p.Start, UpdatedAt: p.Now}
		m.cursors[p.Name] = c
	}
	if c.Owner != "" && c.Owner != p.Owner && c.LeaseUntil != nil && c.LeaseUntil.After(p.Now) {
		cp := *c
		return &cp, false, nil
	}
	until := p.Now.Add(p.Lease)
	c.Owner, c.LeaseUntil, c.UpdatedAt = p.Owner, &until, p.Now
	cp := *c
	return &cp, true, nil
}

func (m *memStore) AdvanceCursor(_ context.Context, name, owner string, seq int64, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cursors[name]
	if !ok {
		return backends.ErrNotFound
	}
	if c.Owner != owner || c.LeaseUntil == nil || !c.LeaseUntil.After(now) {
		return backends.ErrLeaseLost
	}
	c.Seq, c.UpdatedAt = seq, now
	return nil
}

func (m *memStore) ResetCursor(_ context.Context, name string, seq int64, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cursors[name]
	if !ok {
		c = &backends.EventCursor{Name: name}
		m.cursors[name] = c
	}
	c.Seq, c.Owner, c.LeaseUntil, c.UpdatedAt = seq, "", nil, now
	return nil
}

func (m *memStore) ListCursors(context.Context) ([]*backends.EventCursor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*backends.EventCursor
	for _, c := range m.cursors {
		cp := *c
		out = append(out, &cp)
	}
	slices.SortFunc(out, func(a, b *backends.EventCursor) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func (m *memStore) AddDeadLetter(_ context.Context, d *backends.DeadLetter) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp := *d
	m.dead = append(m.dead, &cp)
	return nil
}

func (m *memStore) ListDeadLetters(_ context.Context, cursor string, limit int) ([]*backends.DeadLetter, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*backends.DeadLetter
	for _, d := range m.dead {
		if d.Cursor == cursor && (limit == 0 || len(out) < limit) {
			cp := *d
			out = append(out, &cp)
		}
	}
	return out, nil
}
