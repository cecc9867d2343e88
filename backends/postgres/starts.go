package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// Step starts are written in batches, as step results are (ledBatches):
// a worker that takes a step claimed ahead of it says so with StartStep,
// and with claims made ahead of the workers that is one call per step,
// which written alone was one commit per step, two thirds of a node's
// transactions on the noop-1 benchmark. A batch is one fenced UPDATE of all
// its steps; a step given twice goes in a round of its own, and a batch
// that fails is written again one start at a time, so that each caller
// gets its own error.

// maxStartBatch bounds the starts written by one statement.
const maxStartBatch = 64

// startsSQL starts steps: $1 step ids, $2 owners, $3 lease tokens, $4
// lease expiries, $5 instants (parallel arrays). The WHERE is the fence; a
// cancel requested meanwhile leaves started_at alone (the handler will not
// start). It returns the id and cancel_requested of each step it started.
const startsSQL = `UPDATE steps s SET lease_expires_at = r.expires,
		started_at = CASE WHEN s.cancel_requested THEN s.started_at ELSE r.now END
	FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[])
		AS r(id, owner, token, expires, now)
	WHERE s.id = r.id AND s.state = 'in_progress' AND s.lease_owner = r.owner AND s.lease_token = r.token
	RETURNING s.id, s.cancel_requested`

// startReq is one StartStep call and, once written, its outcome.
type startReq struct {
	p               *backends.StartStepParams
	cancelRequested bool
	err             error
}

// StartStep implements backends.Store: the step's start is written in a
// batch with the starts that other workers ask for meanwhile.
func (s *Store) StartStep(ctx context.Context, p *backends.StartStepParams) (_ bool, rerr error) {
	defer classifyErr(&rerr)
	r := &startReq{p: p}
	s.starts.do(ctx, r, maxStartBatch, s.writeStarts)
	if r.err != nil {
		return false, fmt.Errorf("starting step %d: %w", p.StepID, r.err)
	}
	return r.cancelRequested, nil
}

// writeStarts writes a batch of starts and sets each one's outcome.
func (s *Store) writeStarts(ctx context.Context, batch []*startReq) {
	// A step given twice matches one row: each copy in a round of its own.
	if rounds := splitRounds(batch, func(r *startReq) (int64, bool) { return r.p.StepID, true }); len(rounds) > 1 {
		for _, round := range rounds {
			s.writeStarts(ctx, round)
		}
		return
	}
	err := retrying(func() error { return s.writeStartsOnce(ctx, batch) })
	if err == nil {
		return
	}
	if len(batch) > 1 {
		for _, r := range batch {
			s.writeStarts(ctx, []*startReq{r})
		}
		return
	}
	batch[0].err = err
}

// writeStartsOnce runs startsSQL for the batch.
func (s *Store) writeStartsOnce(ctx context.Context, batch []*startReq) error {
	n := len(batch)
	ids, owners, tokens := make([]int64, n), make([]string, n), make([]int64, n)
	expires, nows := make([]time.Time, n), make([]time.Time, n)
	for i, r := range batch {
		ids[i], owners[i], tokens[i] = r.p.StepID, r.p.Owner, r.p.LeaseToken
		expires[i], nows[i] = ts(r.p.Now.Add(r.p.LeaseDuration)), ts(r.p.Now)
	}
	rows, err := s.pool.Query(ctx, startsSQL, ids, owners, tokens, expires, nows)
	if err != nil {
		return err
	}
	started := make(map[int64]bool, n)
	for rows.Next() {
		var id int64
		var cancel bool
		if err := rows.Scan(&id, &cancel); err != nil {
			rows.Close()
			return err
		}
		started[id] = cancel
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range batch {
		cancel, ok := started[r.p.StepID]
		r.cancelRequested, r.err = cancel, nil
		if !ok {
			r.err = fmt.Errorf("step %d (token %d of %s): %w", r.p.StepID, r.p.LeaseToken, r.p.Owner, backends.ErrLeaseLost)
		}
	}
	return nil
}
