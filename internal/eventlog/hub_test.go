package eventlog

import (
	"context"
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
	var out []*backends.Event
	for _, ev := range m.events {
		if ev.Seq > q.After && (q.TaskID == 0 || ev.TaskID == q.TaskID) {
			out = append(out, ev)
		}
	}
	return out, nil
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
