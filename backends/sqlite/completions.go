package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/taskerd/taskerd/backends"
)

// Step completions are written in sets. A completion one at a time costs
// the single writer six statements (the fenced move, its transition, the
// children's counters, finalize's read, the events, the savepoint), each
// with its own trip through database/sql and the driver, and those trips
// are most of a step's cost. When a group commit (Store.write) holds
// several completions in a row, runGroup writes them together: the moves in
// one UPDATE ... FROM (VALUES ...), the transitions in one INSERT, the
// children's counters in one UPDATE and the events in one INSERT, under one
// savepoint. Finalize stays one task at a time (its read of the execution
// context is at the completion's own instant).
//
// A set holds at most one completion per task, so that what each
// completion's finalize reads is exactly what it would read alone (the
// other completions of the set are of other tasks); when two completions
// of one task come together, the run is cut into chunks of consecutive
// completions of distinct tasks, written in order. Whatever a set cannot do
// exactly as the completions one at a time would (a lease lost, a caller
// gone, any error) is rolled back to the set's savepoint and written again
// one at a time, which says which completion failed and why. Each
// completion's outcome, events (seq included) and transitions are those of
// the one-at-a-time path: TestCompletionSetsAreSequential compares the two.

// completion is one CompleteStep call, in a write operation.
type completion struct {
	p       *backends.CompleteStepParams
	results string // p.Results, {} when empty
	// Set by the write: the outcome and the events to hand to the sink
	// after the commit.
	res    *backends.RecordResult
	events []*backends.Event
}

func newCompletion(p *backends.CompleteStepParams) *completion {
	results := string(p.Results)
	if len(results) == 0 {
		results = `{}`
	}
	return &completion{p: p, results: results}
}

// run writes the completion alone.
func (c *completion) run(ctx context.Context, tx querier) error {
	c.res, c.events = nil, nil
	// One fenced write: the step's row is not read first.
	written, err := scanStep(tx.QueryRowContext(ctx, completeStepSQL, micros(c.p.Now), c.results, c.p.StepID, c.p.LeaseToken))
	if errors.Is(err, sql.ErrNoRows) {
		// Not written: say why.
		_, err = fencedStep(ctx, tx, c.p.StepID, c.p.LeaseToken)
		if err == nil {
			err = fmt.Errorf("step %d: not in_progress under token %d: %w", c.p.StepID, c.p.LeaseToken, backends.ErrLeaseLost)
		}
		return err
	}
	if err != nil {
		return err
	}
	if err := recordMove(ctx, tx, written, backends.StateInProgress, completedReason(written), completedMeta(written), c.p.Now); err != nil {
		return err
	}
	res, err := recordResult(ctx, tx, written, c.p.Now)
	if err != nil {
		return err
	}
	events := backends.RecordEvents(res, c.p.Events, c.p.Now, backends.EventStepFailed)
	if err := appendEvents(ctx, tx, events); err != nil {
		return err
	}
	c.res, c.events = res, events
	return nil
}

// completedReason is the reason of a completion's transition.
func completedReason(written *backends.Step) string {
	if written.State == backends.StateCancelled {
		return "cancelled while running"
	}
	return "completed"
}

// completedMeta is the metadata of a completion's transition.
func completedMeta(written *backends.Step) map[string]any {
	return map[string]any{"attempt": written.Attempts, "lease_token": written.LeaseToken}
}

// errRedo says that a set of completions must be rolled back and written
// one at a time.
var errRedo = errors.New("sqlite: completions written one at a time")

// completeSet writes completions of distinct tasks (at least two) together.
// It returns errRedo, or another error, when they must be written again
// one at a time (the caller rolls back to its savepoint first). taskOf
// receives the task of each step the move found, for the caller to split
// completions of one task into rounds.
func completeSet(ctx context.Context, tx querier, cs []*completion, taskOf map[int64]int64) error {
	for _, c := range cs {
		c.res, c.events = nil, nil
	}
	n := len(cs)
	args := make([]any, 0, 4*n)
	for _, c := range cs {
		args = append(args, c.p.StepID, c.p.LeaseToken, micros(c.p.Now), c.results)
	}
	rows, err := tx.QueryContext(ctx, completeStepsSQL(n), args...)
	if err != nil {
		return err
	}
	written := make(map[int64]*backends.Step, n)
	tasks := make(map[int64]bool, n)
	distinct := true
	for rows.Next() {
		st, err := scanStep(rows)
		if err != nil {
			rows.Close()
			return err
		}
		written[st.ID] = st
		taskOf[st.ID] = st.TaskID
		if tasks[st.TaskID] {
			distinct = false
		}
		tasks[st.TaskID] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(written) != n || !distinct {
		return errRedo // a lease lost, or two completions of one task
	}

	// The transitions, in the completions' order, and the children of the
	// completed steps, one parent fewer each (one step per task: no child
	// has two parents here).
	targs := make([]any, 0, 7*n)
	var done []int64
	for _, c := range cs {
		st := written[c.p.StepID]
		targs = append(targs, st.TaskID, st.ID, string(st.State), completedReason(st), metadata(completedMeta(st)), micros(c.p.Now))
		if st.State.Satisfies() {
			done = append(done, st.ID)
		}
	}
	if _, err := tx.ExecContext(ctx, insertCompletedTransitionsSQL(n), targs...); err != nil {
		return fmt.Errorf("writing the transitions of %d completions: %w", n, err)
	}
	if len(done) > 0 {
		if _, err := tx.ExecContext(ctx, satisfyChildrenOfSQL, idsJSON(done)); err != nil {
			return fmt.Errorf("counting the parents of the children of %d steps: %w", len(done), err)
		}
	}

	// Finalize each task, in the completions' order, as the completion
	// alone would: its reads see only its own task, which no other
	// completion of the set touched.
	var events []*backends.Event
	for _, c := range cs {
		res, err := recordResult(ctx, tx, written[c.p.StepID], c.p.Now)
		if err != nil {
			return err
		}
		c.res = res
		c.events = backends.RecordEvents(res, c.p.Events, c.p.Now, backends.EventStepFailed)
		events = append(events, c.events...)
	}
	return appendEvents(ctx, tx, events)
}

// completeStepsSQL is completeStepSQL for n steps: the VALUES rows are
// (step id, lease token, instant, results).
func completeStepsSQL(n int) string {
	return setSQL(&completeStepsCache, n, func(n int) string {
		return `UPDATE steps SET
		state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'complete' END,
		updated_at = v.column3, last_attempted_at = v.column3, results = v.column4,
		processed = NOT cancel_requested,
		processed_at = CASE WHEN cancel_requested THEN processed_at ELSE v.column3 END,
		lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0
		FROM (VALUES ` + strings.TrimSuffix(strings.Repeat(`(?, ?, ?, ?), `, n), ", ") + `) AS v
		WHERE steps.id = v.column1 AND steps.state = 'in_progress' AND steps.lease_token = v.column2
		RETURNING ` + stepColumns
	})
}

// insertCompletedTransitionsSQL inserts the transitions of n completions
// from in_progress, each numbered after its step's last: rows of (task id,
// step id, to state, reason, metadata, instant).
func insertCompletedTransitionsSQL(n int) string {
	return setSQL(&completedTransitionsCache, n, func(n int) string {
		var b strings.Builder
		b.WriteString(`INSERT INTO transitions
		(task_id, step_id, from_state, to_state, reason, metadata, sort_key, created_at) VALUES `)
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			k := 6*i + 1
			fmt.Fprintf(&b, `(?%d, ?%d, 'in_progress', ?%d, ?%d, ?%d,
			(SELECT coalesce(max(sort_key), 0) + 1 FROM transitions WHERE step_id = ?%d), ?%d)`, k, k+1, k+2, k+3, k+4, k+1, k+5)
		}
		return b.String()
	})
}

var (
	completeStepsCache, completedTransitionsCache sync.Map // int -> string
)

// setSQL returns the statement for n rows, built once per n: the same
// string each time, so that the statement cache prepares it once.
func setSQL(cache *sync.Map, n int, build func(int) string) string {
	if q, ok := cache.Load(n); ok {
		return q.(string)
	}
	q, _ := cache.LoadOrStore(n, build(n))
	return q.(string)
}

// satisfyChildrenOfSQL is satisfyChildrenSQL for the steps in the JSON array
// ?1, when no two of them are parents of one child.
const satisfyChildrenOfSQL = `UPDATE steps SET unsatisfied_parents = unsatisfied_parents - 1
	WHERE id IN (SELECT child_step_id FROM edges WHERE parent_step_id IN (SELECT value FROM json_each(?1)))`

// splitChunks splits completion operations, in order, into chunks of
// consecutive completions of distinct tasks: a chunk ends before a second
// completion of one of its tasks. taskOf gives the task of each step; a
// step not in it (its lease was lost) is a chunk of its own, where it
// fails as it would alone. Written chunk after chunk, the completions keep
// their order, so each sees exactly what it would see written one at a
// time.
func splitChunks(ops []*writeOp, taskOf map[int64]int64) [][]*writeOp {
	var chunks [][]*writeOp
	var cur []*writeOp
	in := map[int64]bool{}
	flush := func() {
		if len(cur) > 0 {
			chunks = append(chunks, cur)
		}
		cur, in = nil, map[int64]bool{}
	}
	for _, op := range ops {
		task, ok := taskOf[op.complete.p.StepID]
		if !ok {
			flush()
			chunks = append(chunks, []*writeOp{op})
			continue
		}
		if in[task] {
			flush()
		}
		cur = append(cur, op)
		in[task] = true
	}
	flush()
	return chunks
}
