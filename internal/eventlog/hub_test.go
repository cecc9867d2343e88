package eventlog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// memLog is an in-memory event log: the part of backends.EventStore a Hub
// uses.
type memLog struct {
	backends.EventStore
	mu     sync.Mutex
	events []*backends.Event
	reads  int // ListEvents calls
}

// addEvents appends events of task (namespace "ns<task>") and returns them.
func (m *memLog) addEvents(task int64, n int) []*backends.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*backends.Event
	for range n {
		ev := &backends.Event{Seq: int64(len(m.events) + 1), Type: backends.EventStepCompleted, TaskID: task,
			Namespace: fmt.Sprint("ns", task)}
		m.events = append(m.events, ev)
		out = append(out, ev)
	}
	return out
}

func (m *memLog) add(types ...backends.EventType) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range types {
		m.events = append(m.events, &backends.Event{Seq: int64(len(m.events) + 1), Type: t, TaskID: 1})
	}
	return int64(len(m.events))
}

func (m *memLog) ListEvents(_ context.Context, q *backends.EventQuery) ([]*backends.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	var out []*backends.Event
	for _, ev := range m.events {
		if ev.Seq > q.After && (q.TaskID == 0 || ev.TaskID == q.TaskID) &&
			(len(q.Namespaces) == 0 || slices.Contains(q.Namespaces, ev.Namespace)) && len(out) < q.LimitOrDefault() {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (m *memLog) readCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}

func (m *memLog) LastEventSeq(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.events)), nil
}

func TestNextWaitsForANotifiedWrite(t *testing.T) {
	log := &memLog{}
	h := NewHub(log, time.Hour)
	got := make(chan []*backends.Event)
	go func() {
		evs, err := h.Next(context.Background(), backends.EventQuery{})
		require.NoError(t, err)
		got <- evs
	}()
	select {
	case <-got:
		t.Fatal("Next returned with an empty log")
	case <-time.After(20 * time.Millisecond):
	}
	h.Notify(log.add(backends.EventTaskCompleted))
	evs := <-got
	require.Len(t, evs, 1)
	require.Equal(t, int64(1), evs[0].Seq)
	require.Equal(t, int64(1), h.Last())

	evs, err := h.Next(context.Background(), backends.EventQuery{After: 0})
	require.NoError(t, err)
	require.Len(t, evs, 1, "what is already there is returned at once")
}

func TestRunFindsOtherNodesWrites(t *testing.T) {
	log := &memLog{}
	h := NewHub(log, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)
	changed := h.Changed()
	log.add(backends.EventTaskCompleted, backends.EventTaskFailed) // written elsewhere: no Notify
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("the poll never announced the write")
	}
	require.Eventually(t, func() bool { return h.Last() == 2 }, 5*time.Second, time.Millisecond)
}

func TestNotifyIgnoresWhatItKnows(t *testing.T) {
	h := NewHub(&memLog{}, 0)
	h.Notify(5)
	changed := h.Changed()
	h.Notify(5)
	h.Notify(3)
	select {
	case <-changed:
		t.Fatal("a seq the hub knew woke its readers")
	default:
	}
	h.Notify(6)
	<-changed
}

func TestNextEndsWithItsContext(t *testing.T) {
	h := NewHub(&memLog{}, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := h.Next(ctx, backends.EventQuery{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func seqsOf(evs []*backends.Event) []int64 {
	out := []int64{}
	for _, ev := range evs {
		out = append(out, ev.Seq)
	}
	return out
}

// What this node published is read from the tail, filtered as the store
// would, without a query; the result is what the store would answer.
func TestListEventsReadsPublishedEventsFromTheTail(t *testing.T) {
	log := &memLog{}
	h := NewHub(log, time.Hour)
	h.Publish(log.addEvents(1, 3))
	h.Publish(log.addEvents(2, 2))
	h.Publish(log.addEvents(1, 1))
	ctx := context.Background()
	_, err := h.ListEvents(ctx, &backends.EventQuery{}) // the first read learns where the log ends
	require.NoError(t, err)
	reads := log.readCount()
	for _, q := range []backends.EventQuery{
		{}, {After: 2}, {After: 6}, {After: 9}, {TaskID: 2}, {TaskID: 1, After: 3}, {Namespaces: []string{"ns2"}},
		{Namespaces: []string{"ns1", "ns2"}, Limit: 4}, {After: 1, Limit: 2}, {TaskID: 3},
	} {
		got, err := h.ListEvents(ctx, &q)
		require.NoError(t, err)
		want, err := log.ListEvents(ctx, &q)
		require.NoError(t, err)
		require.Equal(t, seqsOf(want), seqsOf(got), "%+v", q)
	}
	require.Equal(t, reads+10, log.readCount(), "the hub read none of them from the store")
}

// Where the tail lacks a seq (another node wrote it: in the store, never
// published here), the rest is read from the store, in order.
func TestListEventsReadsWhatTheTailLacksFromTheStore(t *testing.T) {
	log := &memLog{}
	h := NewHub(log, time.Hour)
	h.Publish(log.addEvents(1, 2))
	log.addEvents(2, 2) // another node's
	h.Publish(log.addEvents(1, 2))
	got, err := h.ListEvents(context.Background(), &backends.EventQuery{})
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3, 4, 5, 6}, seqsOf(got))
	got, err = h.ListEvents(context.Background(), &backends.EventQuery{After: 1, Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []int64{2, 3}, seqsOf(got), "the limit counts the tail's part")
}

// A hub made after the log began (a restart) knows none of the older
// events: a reader from the start gets them from the store, though the
// hub was never Run.
func TestListEventsReadsTheOlderLogFromTheStore(t *testing.T) {
	log := &memLog{}
	log.addEvents(1, 3)
	h := NewHub(log, time.Hour)
	got, err := h.Next(context.Background(), backends.EventQuery{})
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3}, seqsOf(got))
	require.Equal(t, int64(3), h.Last())
}

// A reader further behind than the tail holds reads from the store.
func TestListEventsBehindTheTail(t *testing.T) {
	log := &memLog{}
	h := NewHub(log, time.Hour)
	for range TailSize/100 + 1 {
		h.Publish(log.addEvents(1, 100))
	}
	got, err := h.ListEvents(context.Background(), &backends.EventQuery{After: 5, Limit: 3})
	require.NoError(t, err)
	require.Equal(t, []int64{6, 7, 8}, seqsOf(got))
	last := int64(TailSize/100+1) * 100
	got, err = h.ListEvents(context.Background(), &backends.EventQuery{After: last - 2})
	require.NoError(t, err)
	require.Equal(t, []int64{last - 1, last}, seqsOf(got))
}

// The tail holds no event larger than TailEventBytes and no more than
// TailBytes in all; what it lets go is read from the store, and reads are
// the same.
func TestTailIsBoundedInBytes(t *testing.T) {
	log := &memLog{}
	h := NewHub(log, time.Hour)
	big := log.addEvents(1, 1)
	big[0].Results = json.RawMessage(`"` + strings.Repeat("x", TailEventBytes) + `"`)
	h.Publish(big)
	require.Nil(t, h.tail[big[0].Seq%TailSize].ev, "too large to keep")

	const n = 2 * TailBytes / (32 << 10)
	for range n {
		evs := log.addEvents(2, 1)
		evs[0].Results = json.RawMessage(`"` + strings.Repeat("y", 32<<10) + `"`)
		h.Publish(evs)
		require.LessOrEqual(t, h.tailBytes, TailBytes)
	}
	kept := 0
	for _, s := range h.tail {
		if s.ev != nil {
			kept++
		}
	}
	require.Positive(t, kept)
	require.Less(t, kept, n, "the oldest went")

	ctx := context.Background()
	for _, after := range []int64{0, 1, n / 2, n - 3} {
		got, err := h.ListEvents(ctx, &backends.EventQuery{After: after, Limit: 5})
		require.NoError(t, err)
		want, err := log.ListEvents(ctx, &backends.EventQuery{After: after, Limit: 5})
		require.NoError(t, err)
		require.Equal(t, seqsOf(want), seqsOf(got), "after %d", after)
	}
}
