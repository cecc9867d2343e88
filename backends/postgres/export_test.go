package postgres

import (
	"context"

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
		batch[i] = &resultReq{complete: true, stepID: p.StepID, token: p.LeaseToken, now: p.Now, results: `{}`, done: make(chan resultResp, 1)}
	}
	s.writeBatch(ctx, batch)
	rrs, errs := make([]*backends.RecordResult, len(ps)), make([]error, len(ps))
	for i, r := range batch {
		resp := <-r.done
		rrs[i], errs[i] = resp.rr, resp.err
	}
	return rrs, errs
}
