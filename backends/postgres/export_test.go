package postgres

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// ClaimSQL is the claim's statement, for plan tests, and KeyLookupsSQL
// the settings ClaimSteps runs it under.
var ClaimSQL, KeyLookupsSQL = claimSQL, keyLookupsSQL

// RecordTogether writes step completions as one batch, as if their callers
// had all queued at once, and returns each one's outcome in order.
func RecordTogether(ctx context.Context, s *Store, ps []backends.CompleteStepParams) ([]*backends.RecordResult, []error) {
	batch := make([]*resultReq, len(ps))
	for i, p := range ps {
		batch[i] = &resultReq{complete: true, stepID: p.StepID, token: p.LeaseToken, now: p.Now, results: `{}`}
	}
	s.writeBatch(ctx, batch)
	rrs, errs := make([]*backends.RecordResult, len(ps)), make([]error, len(ps))
	for i, r := range batch {
		rrs[i], errs[i] = r.resp.rr, r.resp.err
	}
	return rrs, errs
}

// BatchItem is one result of RecordBatch: a completion, or a failure when
// Fail is set.
type BatchItem struct {
	Complete *backends.CompleteStepParams
	Fail     *backends.FailStepParams
}

// RecordBatch writes step results as one batch, as if their callers had
// all queued at once, and returns each one's outcome and the events its
// caller's sink would get.
func RecordBatch(ctx context.Context, s *Store, items []BatchItem) ([]*backends.RecordResult, [][]*backends.Event, []error) {
	batch := make([]*resultReq, len(items))
	for i, it := range items {
		if c := it.Complete; c != nil {
			batch[i] = &resultReq{complete: true, stepID: c.StepID, token: c.LeaseToken, now: c.Now, results: `{}`, custom: c.Events}
		} else {
			f := it.Fail
			errJSON, _ := json.Marshal(f.Error)
			batch[i] = &resultReq{stepID: f.StepID, token: f.LeaseToken, now: f.Now, errJSON: string(errJSON),
				retryable: f.Error.Retryable, kind: f.Error.Kind, custom: f.Events}
		}
	}
	s.writeBatch(ctx, batch)
	rrs, events, errs := make([]*backends.RecordResult, len(items)), make([][]*backends.Event, len(items)), make([]error, len(items))
	for i, r := range batch {
		rrs[i], events[i], errs[i] = r.resp.rr, r.resp.events, r.resp.err
	}
	return rrs, events, errs
}

// AppendEventsSQL numbers and writes events (see events.go), for tests
// that hold a writer's transaction open.
const AppendEventsSQL = appendEventsSQL

// EventArgs are AppendEventsSQL's arguments.
func EventArgs(events []*backends.Event) ([]any, error) { return eventArgs(events) }

// MigrateTo migrates the database dsn names up to version, for the tests
// of a migration.
func MigrateTo(ctx context.Context, dsn string, version int) ([]string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	return migrateTo(ctx, conn, version)
}

// ListEventsSQL is ListEvents' statement for q and its arguments, for plan
// tests.
func ListEventsSQL(q *backends.EventQuery) (string, []any) { return listEventsSQL(q) }

// CreateTogether writes creations as one batch, as if their callers had
// all queued at once, and returns each one's outcome in order.
func CreateTogether(ctx context.Context, s *Store, ps []*backends.CreateTaskParams) ([]*backends.Task, [][]*backends.Event, []error) {
	batch := make([]*createReq, len(ps))
	for i, p := range ps {
		batch[i] = &createReq{ctx: ctx, p: p, done: make(chan createResp, 1)}
	}
	s.writeCreationBatch(batch)
	tasks, events, errs := make([]*backends.Task, len(ps)), make([][]*backends.Event, len(ps)), make([]error, len(ps))
	for i, r := range batch {
		resp := <-r.done
		tasks[i], events[i], errs[i] = resp.task, resp.events, resp.err
	}
	return tasks, events, errs
}

// CreationQueue says how many creations wait for a batch and whether one
// is being written.
func CreationQueue(s *Store) (waiting int, writing bool) {
	s.creations.mu.Lock()
	defer s.creations.mu.Unlock()
	return len(s.creations.waiting), s.creations.running
}

// StartTogether writes step starts as one batch, as if their callers had
// all queued at once, and returns each one's outcome in order.
func StartTogether(ctx context.Context, s *Store, ps []backends.StartStepParams) ([]bool, []error) {
	batch := make([]*startReq, len(ps))
	for i := range ps {
		batch[i] = &startReq{p: &ps[i]}
	}
	s.writeStarts(ctx, batch)
	cancels, errs := make([]bool, len(ps)), make([]error, len(ps))
	for i, r := range batch {
		cancels[i], errs[i] = r.cancelRequested, r.err
	}
	return cancels, errs
}
