package postgres

import (
	"context"
	"slices"
	"sync"
)

// ledBatches writes requests in batches led by their callers, with no
// goroutine of its own: the first caller to find no batch being written
// leads. It takes every request waiting (up to most), writes them in one
// go, and goes on with whatever queued meanwhile until its own request is
// written; then it hands the lead to the oldest waiting caller. A lone
// request waits for nobody. Step results (results.go) and step starts
// (starts.go) are written so.
type ledBatches[R any] struct {
	mu      sync.Mutex
	waiting []*ledReq[R]
	leading bool
}

type ledReq[R any] struct {
	req R
	// done says true when a batch wrote req, false when its caller must
	// now lead. Capacity 1: the leader never waits for a caller.
	done chan bool
}

// do queues req and returns once a batch has written it. write must write
// the whole batch and leave each request's outcome in the request itself;
// it runs with a context that no caller's cancellation ends, since the
// batch is written for every caller in it.
func (q *ledBatches[R]) do(ctx context.Context, req R, most int, write func(ctx context.Context, batch []R)) {
	me := &ledReq[R]{req: req, done: make(chan bool, 1)}
	q.mu.Lock()
	q.waiting = append(q.waiting, me)
	if q.leading {
		q.mu.Unlock()
		if <-me.done {
			return // written by a leader's batch
		}
	} else {
		q.leading = true
		q.mu.Unlock()
	}
	bctx := context.WithoutCancel(ctx)
	for {
		q.mu.Lock()
		n := min(len(q.waiting), most)
		batch := slices.Clone(q.waiting[:n])
		q.waiting = slices.Delete(q.waiting, 0, n)
		q.mu.Unlock()
		reqs := make([]R, len(batch))
		for i, it := range batch {
			reqs[i] = it.req
		}
		write(bctx, reqs)
		mine := false
		for _, it := range batch {
			if it == me {
				mine = true
			} else {
				it.done <- true
			}
		}
		if mine {
			q.mu.Lock()
			if len(q.waiting) > 0 {
				q.waiting[0].done <- false
			} else {
				q.leading = false
			}
			q.mu.Unlock()
			return
		}
		// req is still waiting behind most others.
	}
}
