package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/internal/eventlog"
)

// logEnv is an event log to test readers on: the in-memory fake, or a real
// database (see eachLog).
type logEnv struct {
	store backends.EventStore
	// write writes one event, of a task in namespace ns, and returns its
	// Seq.
	write func(t *testing.T, ns string) int64
	// another opens a second handle on the same database: another node's.
	another func(t *testing.T) backends.EventStore
}

// memEnv is the in-memory log.
func memEnv(t *testing.T) *logEnv {
	m := newMemStore()
	var mu sync.Mutex
	var task int64
	return &logEnv{
		store: m,
		write: func(t *testing.T, ns string) int64 {
			mu.Lock()
			task++
			id := task
			mu.Unlock()
			return m.append(id, ns, backends.EventTaskInitializeRequested)
		},
		another: func(*testing.T) backends.EventStore { return m },
	}
}

// recorder is a sink that records what it was given and fails when fail
// says so.
type recorder struct {
	mu       sync.Mutex
	ok       []int64 // seqs delivered, in order
	by       map[int64][]string
	attempts map[int64]int
	// fail decides an attempt (1 for the first of an event).
	fail func(ev *backends.Event, attempt int) error
}

func newRecorder(fail func(*backends.Event, int) error) *recorder {
	return &recorder{by: map[int64][]string{}, attempts: map[int64]int{}, fail: fail}
}

// sink is the recorder as node owner's sink.
func (r *recorder) sink(owner string) Sink { return recorderSink{r, owner} }

type recorderSink struct {
	r     *recorder
	owner string
}

func (s recorderSink) Deliver(_ context.Context, ev *backends.Event, _ []byte) error {
	r := s.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[ev.Seq]++
	if r.fail != nil {
		if err := r.fail(ev, r.attempts[ev.Seq]); err != nil {
			return err
		}
	}
	r.ok = append(r.ok, ev.Seq)
	r.by[ev.Seq] = append(r.by[ev.Seq], s.owner)
	return nil
}

func (r *recorder) delivered() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.ok...)
}

// running is a reader running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's, once done is closed
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		require.ErrorIs(t, r.err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("the reader did not stop")
	}
}

// start runs a reader over store until the test ends (or stop).
func start(t *testing.T, store backends.EventStore, o Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hub := eventlog.NewHub(store, 10*time.Millisecond)
	go hub.Run(ctx)
	o.Store, o.Hub = store, hub
	if o.Cursor == "" {
		o.Cursor = "webhook:test"
	}
	if o.Owner == "" {
		o.Owner = "node-1"
	}
	if o.BackoffBase == 0 {
		o.BackoffBase, o.BackoffMax = time.Millisecond, 5*time.Millisecond
	}
	r, err := NewReader(o)
	require.NoError(t, err)
	run := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		run.err = r.Run(ctx)
		close(run.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-run.done
	})
	return run
}

// waitDelivered waits until rec has delivered want, and checks it is
// exactly that (in that order).
func waitDelivered(t *testing.T, rec *recorder, want []int64) {
	t.Helper()
	require.Eventually(t, func() bool { return len(rec.delivered()) >= len(want) }, 10*time.Second, 5*time.Millisecond,
		"want %v, delivered %v", want, rec.delivered())
	require.Equal(t, want, rec.delivered())
}

func cursorSeq(t *testing.T, store backends.EventStore, name string) int64 {
	t.Helper()
	cs, err := store.ListCursors(context.Background())
	require.NoError(t, err)
	for _, c := range cs {
		if c.Name == name {
			return c.Seq
		}
	}
	t.Fatalf("no cursor %q", name)
	return 0
}

// waitCursor waits until the cursor's stored Seq is seq.
func waitCursor(t *testing.T, store backends.EventStore, name string, seq int64) {
	t.Helper()
	require.Eventually(t, func() bool {
		cs, err := store.ListCursors(context.Background())
		require.NoError(t, err)
		for _, c := range cs {
			if c.Name == name && c.Seq == seq {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "cursor %s to reach %d", name, seq)
}

// A new reader starts at the log's end; it delivers the events that match
// its filters, in order, and its cursor moves past the others too.
func TestReaderDeliversInOrderFromTheLogsEnd(t *testing.T) {
	eachLog(t, func(t *testing.T, env *logEnv) {
		before := env.write(t, "a")
		rec := newRecorder(nil)
		start(t, env.store, Options{Sink: rec.sink("n1"), Namespaces: []string{"a"}})
		waitCursor(t, env.store, "webhook:test", before)

		var want []int64
		var last int64
		for i := range 6 {
			ns := []string{"a", "b"}[i%2]
			last = env.write(t, ns)
			if ns == "a" {
				want = append(want, last)
			}
		}
		last = env.write(t, "b") // filtered out, last: the cursor still passes it
		waitDelivered(t, rec, want)
		waitCursor(t, env.store, "webhook:test", last)
	})
}

// from = "beginning": a new reader delivers the events written before it.
func TestReaderFromBeginning(t *testing.T) {
	eachLog(t, func(t *testing.T, env *logEnv) {
		a := env.write(t, "a")
		b := env.write(t, "a")
		rec := newRecorder(nil)
		start(t, env.store, Options{Sink: rec.sink("n1"), FromBeginning: true, Events: []string{"task.*"}})
		waitDelivered(t, rec, []int64{a, b})
	})
}

// A failing event is retried, then given up on into the dead letters; the
// events after it wait for it, then go on in order.
func TestReaderRetriesThenDeadLetters(t *testing.T) {
	eachLog(t, func(t *testing.T, env *logEnv) {
		rec := newRecorder(func(ev *backends.Event, attempt int) error {
			switch {
			case ev.Namespace == "poison":
				return fmt.Errorf("HTTP 500: poison %d", attempt)
			case ev.Namespace == "flaky" && attempt < 3:
				return errors.New("HTTP 503")
			}
			return nil
		})
		metrics := NewMetrics()
		start(t, env.store, Options{Sink: rec.sink("n1"), MaxAttempts: 4, Metrics: metrics})
		waitCursor(t, env.store, "webhook:test", 0)

		s1 := env.write(t, "flaky")
		s2 := env.write(t, "poison")
		s3 := env.write(t, "flaky")
		s4 := env.write(t, "a")
		waitDelivered(t, rec, []int64{s1, s3, s4})
		waitCursor(t, env.store, "webhook:test", s4)

		dead, err := env.store.ListDeadLetters(context.Background(), "webhook:test", 0)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, s2, dead[0].Seq)
		assert.Equal(t, 4, dead[0].Attempts)
		assert.Equal(t, "HTTP 500: poison 4", dead[0].LastError)
		rec.mu.Lock()
		assert.Equal(t, map[int64]int{s1: 3, s2: 4, s3: 3, s4: 1}, rec.attempts)
		rec.mu.Unlock()
		assert.Equal(t, 1.0, testutil.ToFloat64(metrics.dead.WithLabelValues("webhook:test")))
		assert.Equal(t, 8.0, testutil.ToFloat64(metrics.deliveries.WithLabelValues("webhook:test", "failed")))
		assert.Equal(t, 3.0, testutil.ToFloat64(metrics.deliveries.WithLabelValues("webhook:test", "ok")))
	})
}

// A restarted reader goes on from its cursor: the events written while it
// was down are delivered, nothing twice, nothing out of order.
func TestReaderRestartGoesOnFromTheCursor(t *testing.T) {
	eachLog(t, func(t *testing.T, env *logEnv) {
		rec := newRecorder(nil)
		r1 := start(t, env.store, Options{Sink: rec.sink("n1"), FromBeginning: true})
		var want []int64
		for range 3 {
			want = append(want, env.write(t, "a"))
		}
		waitDelivered(t, rec, want)
		r1.stop(t)
		for range 3 {
			want = append(want, env.write(t, "a"))
		}
		start(t, env.store, Options{Sink: rec.sink("n1"), FromBeginning: true})
		waitDelivered(t, rec, want)
	})
}

// A reader that keeps up does not write its cursor per batch: only once
// the log is quiet (FlushIdle) or a while has passed (FlushEvery), and when
// it stops.
func TestReaderWritesItsCursorWhenQuietNotPerBatch(t *testing.T) {
	eachLog(t, func(t *testing.T, env *logEnv) {
		rec := newRecorder(nil)
		r := start(t, env.store, Options{Sink: rec.sink("n1"), FromBeginning: true, FlushEvery: time.Hour, FlushIdle: time.Hour})
		var want []int64
		for range 5 {
			want = append(want, env.write(t, "a"))
			waitDelivered(t, rec, want) // one batch each
		}
		require.Zero(t, cursorSeq(t, env.store, "webhook:test"), "written while delivering")
		r.stop(t)
		require.Equal(t, want[len(want)-1], cursorSeq(t, env.store, "webhook:test"), "written when it stopped")

		start(t, env.store, Options{Sink: rec.sink("n1"), FromBeginning: true, FlushEvery: time.Hour, FlushIdle: time.Millisecond})
		want = append(want, env.write(t, "a"))
		waitDelivered(t, rec, want)
		waitCursor(t, env.store, "webhook:test", want[len(want)-1])
	})
}

// Two nodes on one database: the lease holder delivers, each event once;
// when it stops, the other takes over where it left off.
func TestTwoNodesDeliverEachEventOnce(t *testing.T) {
	eachLog(t, func(t *testing.T, env *logEnv) {
		rec := newRecorder(nil)
		o := Options{FromBeginning: true, Lease: time.Second}
		o.Sink, o.Owner = rec.sink("n1"), "n1"
		r1 := start(t, env.store, o)
		o.Sink, o.Owner = rec.sink("n2"), "n2"
		r2 := start(t, env.another(t), o)
		var want []int64
		for range 10 {
			want = append(want, env.write(t, "a"))
		}
		waitDelivered(t, rec, want)
		rec.mu.Lock()
		holder := rec.by[want[0]][0]
		for _, seq := range want {
			assert.Equal(t, []string{holder}, rec.by[seq], "event %d", seq)
		}
		rec.mu.Unlock()

		// The holder stops; the other node takes over once its lease ends.
		if holder == "n1" {
			r1.stop(t)
		} else {
			r2.stop(t)
		}
		for range 5 {
			want = append(want, env.write(t, "a"))
		}
		waitDelivered(t, rec, want)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, seq := range want[10:] {
			assert.Len(t, rec.by[seq], 1, "event %d", seq)
			assert.NotEqual(t, holder, rec.by[seq][0], "event %d", seq)
		}
	})
}

// An operator's replay (ResetCursor) takes effect on a running reader: it
// delivers again from the new position.
func TestReaderFollowsAReplay(t *testing.T) {
	eachLog(t, func(t *testing.T, env *logEnv) {
		rec := newRecorder(nil)
		start(t, env.store, Options{Sink: rec.sink("n1"), FromBeginning: true, Lease: 300 * time.Millisecond})
		var want []int64
		for range 4 {
			want = append(want, env.write(t, "a"))
		}
		waitDelivered(t, rec, want)
		waitCursor(t, env.store, "webhook:test", want[3])
		require.NoError(t, env.store.ResetCursor(context.Background(), "webhook:test", want[1]-1, time.Now()))
		waitDelivered(t, rec, append(want, want[1:]...))
	})
}

// A node stands by while another holds the cursor's lease.
func TestReaderStandsByWhileAnotherNodeHoldsTheLease(t *testing.T) {
	m := newMemStore()
	_, ok, err := m.AcquireCursor(context.Background(), &backends.AcquireCursorParams{Name: "webhook:test", Owner: "other", Lease: time.Hour, Now: time.Now()})
	require.NoError(t, err)
	require.True(t, ok)
	rec := newRecorder(nil)
	start(t, m, Options{Sink: rec.sink("n1"), FromBeginning: true})
	m.append(1, "a", backends.EventTaskInitializeRequested)
	require.Never(t, func() bool { return len(rec.delivered()) > 0 }, 200*time.Millisecond, 10*time.Millisecond)
	require.Equal(t, int64(0), cursorSeq(t, m, "webhook:test"))
}

// A reader whose lease was taken (it stalled past it, another node took
// the cursor) stops: its next cursor write is refused, and it delivers at
// most the batch it had in hand. (A reader that really stalled past its
// lease learns it sooner, at the renewal before its next attempt; here the
// lease is taken without time passing.)
func TestReaderStopsWhenItsLeaseIsTaken(t *testing.T) {
	m := newMemStore()
	rec := newRecorder(nil)
	start(t, m, Options{Sink: rec.sink("n1"), FromBeginning: true})
	first := m.append(1, "a", backends.EventTaskInitializeRequested)
	waitDelivered(t, rec, []int64{first})
	waitCursor(t, m, "webhook:test", first)
	m.mu.Lock()
	until := time.Now().Add(time.Hour)
	m.cursors["webhook:test"].Owner, m.cursors["webhook:test"].LeaseUntil = "other", &until
	m.mu.Unlock()
	for range 3 {
		m.append(1, "a", backends.EventTaskInitializeRequested)
	}
	require.Never(t, func() bool { return len(rec.delivered()) > 4 }, 300*time.Millisecond, 10*time.Millisecond)
	require.Equal(t, first, cursorSeq(t, m, "webhook:test"))
	for range 3 {
		m.append(1, "a", backends.EventTaskInitializeRequested)
	}
	require.Never(t, func() bool { return len(rec.delivered()) > 4 }, 300*time.Millisecond, 10*time.Millisecond, "stopped")
}
