package postgres

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// Task creations that arrive together are written in one transaction, as
// step results are (results.go), and for the same reason: every write
// takes the event log's numbers under the one row lock of event_seq, held
// to its COMMIT (events.go), so writers commit one after another, each
// waiting for the previous one's WAL flush. Four API clients creating tasks
// at once paid four flushes in a row; in one batch they pay one.
//
// Unlike a result's writer, a creation's caller is often an API request
// with a deadline, and it must get its answer at that deadline even while
// the database does not answer at all. So no caller writes the batches: a
// goroutine does (started when a creation finds none running, gone when
// the queue is empty), and each caller waits for its answer or its own
// deadline, whichever comes first. A caller that gives up while its
// creation is still queued takes it out (it is never written); once a
// batch has taken it, it may still be written, as a transaction whose
// COMMIT was in flight when its caller gave up may be.
//
// Only CreateTask's common case is batched (no idempotency key, no
// bypassed step: createTaskPipelined); a batch of one is written exactly
// as before, in one round trip.

// maxCreateBatch bounds the creations written in one transaction.
const maxCreateBatch = 32

// createReq is one CreateTask call waiting for a batch.
type createReq struct {
	ctx  context.Context
	p    *backends.CreateTaskParams
	done chan createResp // capacity 1: the writer never waits for the caller
}

type createResp struct {
	task   *backends.Task
	events []*backends.Event
	err    error
}

// createQueue is the creations waiting for a batch, and whether the
// goroutine that writes them runs.
type createQueue struct {
	mu      sync.Mutex
	waiting []*createReq
	running bool
}

// createBatched writes p in a batch and returns what it wrote, or ctx's
// error once ctx ends.
func (s *Store) createBatched(ctx context.Context, p *backends.CreateTaskParams) (*backends.Task, []*backends.Event, error) {
	q := &s.creations
	r := &createReq{ctx: ctx, p: p, done: make(chan createResp, 1)}
	q.mu.Lock()
	q.waiting = append(q.waiting, r)
	if !q.running {
		q.running = true
		go s.writeCreations()
	}
	q.mu.Unlock()
	select {
	case resp := <-r.done:
		return resp.task, resp.events, resp.err
	case <-ctx.Done():
	}
	q.mu.Lock()
	if i := slices.Index(q.waiting, r); i >= 0 {
		q.waiting = slices.Delete(q.waiting, i, i+1) // never written
	}
	q.mu.Unlock()
	select {
	case resp := <-r.done: // answered meanwhile: the answer wins
		return resp.task, resp.events, resp.err
	default:
		return nil, nil, ctx.Err()
	}
}

// writeCreations writes the queue's creations in batches until it is
// empty.
func (s *Store) writeCreations() {
	q := &s.creations
	for {
		q.mu.Lock()
		var batch []*createReq
		for _, r := range q.waiting {
			if len(batch) == maxCreateBatch {
				break
			}
			batch = append(batch, r)
		}
		q.waiting = slices.Delete(q.waiting, 0, len(batch))
		if len(batch) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		s.writeCreationBatch(batch)
	}
}

// batchContext is the context a batch is written under: no caller's (one
// giving up must not fail the others'), but done by the latest of their
// deadlines, so that a batch for callers who have all given up does not
// wait for a frozen database for ever. ok is false when every caller has
// already given up.
func batchContext(batch []*createReq) (ctx context.Context, cancel context.CancelFunc, ok bool) {
	var latest time.Time
	for _, r := range batch {
		if r.ctx.Err() != nil {
			continue
		}
		ok = true
		d, has := r.ctx.Deadline()
		if !has {
			return context.Background(), func() {}, true
		}
		if d.After(latest) {
			latest = d
		}
	}
	if !ok {
		return nil, nil, false
	}
	ctx, cancel = context.WithDeadline(context.Background(), latest)
	return ctx, cancel, true
}

// writeCreationBatch writes a batch and answers each of its requests.
func (s *Store) writeCreationBatch(batch []*createReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- createResp{err: err} // its caller is gone: not written
			continue
		}
		live = append(live, r)
	}
	ctx, cancel, ok := batchContext(live)
	if !ok {
		return
	}
	defer cancel()
	if len(live) == 1 {
		r := live[0]
		task, events, err := s.createTaskPipelinedRetrying(ctx, r.p)
		r.done <- createResp{task: task, events: events, err: err}
		return
	}
	var (
		tasks  []*backends.Task
		events [][]*backends.Event
		err    error
	)
	err = retrying(func() (err error) {
		tasks, events, err = s.createTasks(ctx, live)
		return err
	})
	if err != nil {
		// Each on its own, so that each caller gets its own creation's
		// error and not a neighbour's.
		for _, r := range live {
			task, events, err := s.createTaskPipelinedRetrying(ctx, r.p)
			r.done <- createResp{task: task, events: events, err: err}
		}
		return
	}
	for i, r := range live {
		r.done <- createResp{task: tasks[i], events: events[i]}
	}
}

// createTaskPipelinedRetrying is createTaskPipelined, run again when
// PostgreSQL aborted it as a deadlock victim or serialization failure.
func (s *Store) createTaskPipelinedRetrying(ctx context.Context, p *backends.CreateTaskParams) (task *backends.Task, events []*backends.Event, err error) {
	err = retrying(func() (err error) {
		task, events, err = s.createTaskPipelined(ctx, p)
		return err
	})
	return task, events, err
}

// createTasks writes several creations in one transaction, in two round
// trips: BEGIN and each task's createTaskSQL; then their events, numbered
// last (events.go), and COMMIT.
func (s *Store) createTasks(ctx context.Context, batch []*createReq) (tasks []*backends.Task, events [][]*backends.Event, err error) {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	for _, r := range batch {
		args, err := createTaskArgs(r.p)
		if err != nil {
			return nil, nil, err
		}
		b.Queue(createTaskSQL, args...)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Release()
	defer rollbackOnError(ctx, conn, &err)
	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		for range batch {
			task, err := scanTask(br.QueryRow())
			if err != nil {
				return err
			}
			tasks = append(tasks, task)
		}
		return br.Close()
	}()
	if err != nil {
		return nil, nil, err
	}
	var all []*backends.Event
	for i, r := range batch {
		evs := backends.CreatedEvents(tasks[i], r.p.Now)
		events = append(events, evs)
		all = append(all, evs...)
	}
	w := s.wakes.note(all, batch[0].p.Now)
	if err = commitWithEvents(ctx, conn, all, w); err != nil {
		return nil, nil, err
	}
	w.committed()
	return tasks, events, nil
}
