package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/backendtest"
)

// TestCompletionSetsAreSequential runs the same groups of completions on two
// stores, one writing them as sets and one strictly one at a time, and
// requires the same outcome for every completion (result or error), the
// same steps, the same transitions of every task and the same event log.
// The groups mix what a set cannot write as such: several completions of
// one task (fan-out), a stale lease token, the same step twice, a cancel
// requested while running, and a caller that gave up.
func TestCompletionSetsAreSequential(t *testing.T) {
	t.Parallel()
	// Whether a seed's groups hold a set that can be written as such (two
	// or more completions of distinct tasks, none stale, gone or
	// cancelled) depends on which steps the claims take together; that sets
	// were written at all is checked over every seed.
	var setsWritten atomic.Int64
	t.Cleanup(func() { assert.Positive(t, setsWritten.Load(), "no completions were written as a set") })
	for seed := range uint64(12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			sets, _ := openFile(t, "?synchronous=normal")
			alone, _ := openFile(t, "?synchronous=normal")
			alone.completionSets = false
			stores := []*Store{sets, alone}
			rng := rand.New(rand.NewPCG(seed, 1))
			now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			shapes := [][]backends.NewStep{backendtest.Chain(3), backendtest.RandomDAG(8, seed), backendtest.Chain(1), backendtest.RandomDAG(5, seed+100)}
			for i := range 6 {
				for _, s := range stores {
					backendtest.CreateTask(t, s, shapes[i%len(shapes)], now)
				}
			}
			ctx := context.Background()
			for round := 0; ; round++ {
				require.Less(t, round, 200, "the tasks never finish")
				now = now.Add(time.Second)
				var claims [][]*backends.Claim
				limit := 1 + rng.IntN(12)
				for _, s := range stores {
					cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: limit, LeaseDuration: time.Minute, Now: now})
					require.NoError(t, err)
					claims = append(claims, cs)
				}
				require.Equal(t, claims[0], claims[1], "round %d: the stores diverged before the completions", round)
				if len(claims[0]) == 0 {
					// What stays claimed (a stale token, a caller gone) is
					// recovered once its lease has expired.
					now = now.Add(2 * time.Minute)
					var recovered [2][]*backends.RecordResult
					for si, s := range stores {
						rs, err := s.RecoverExpiredLeases(ctx, &backends.RecoverParams{Limit: 100, Now: now})
						require.NoError(t, err)
						recovered[si] = rs
					}
					require.Equal(t, recovered[1], recovered[0])
					if len(recovered[0]) == 0 {
						break
					}
					continue
				}
				// Sometimes a cancel is requested while a step runs.
				if rng.IntN(4) == 0 {
					c := claims[0][rng.IntN(len(claims[0]))]
					for _, s := range stores {
						_, err := s.CancelTask(ctx, &backends.CancelTaskParams{TaskID: c.Step.TaskID, Reason: "test", Now: now})
						require.NoError(t, err)
					}
				}
				// The group: the claims in a random order, with a stale
				// token, a second completion of one step and a gone caller
				// now and then.
				type call struct {
					p    backends.CompleteStepParams
					gone bool
				}
				var calls []call
				for i, k := range rng.Perm(len(claims[0])) {
					c := claims[0][k]
					p := backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken,
						Results: json.RawMessage(fmt.Sprintf(`{"round":%d}`, round)), Now: now.Add(time.Duration(i) * time.Millisecond)}
					if rng.IntN(3) == 0 {
						p.Events = []backends.CustomEvent{{Name: "test.done", Payload: json.RawMessage(`1`)}}
					}
					switch rng.IntN(10) {
					case 0:
						p.LeaseToken-- // stale
					case 1:
						calls = append(calls, call{p: p}) // the same step twice
					}
					calls = append(calls, call{p: p, gone: rng.IntN(15) == 0})
				}
				var outcomes [2][]string
				for si, s := range stores {
					var ops []*writeOp
					var cs []*completion
					for _, cl := range calls {
						p := cl.p
						opCtx := ctx
						if cl.gone {
							gone, cancel := context.WithCancel(ctx)
							cancel()
							opCtx = gone
						}
						c := newCompletion(&p)
						cs = append(cs, c)
						ops = append(ops, &writeOp{ctx: opCtx, complete: c, done: make(chan error, 1),
							fn: func(tx querier) error { return c.run(opCtx, tx) }})
					}
					// The writer is idle between the test's calls: the
					// group runs here as writeLoop would run it.
					s.runGroup(ops)
					for i, op := range ops {
						err := <-op.done
						if err != nil {
							outcomes[si] = append(outcomes[si], "error: "+err.Error())
							continue
						}
						b, jerr := json.Marshal(cs[i].res)
						require.NoError(t, jerr)
						ev, jerr := json.Marshal(cs[i].events)
						require.NoError(t, jerr)
						outcomes[si] = append(outcomes[si], string(b)+" "+string(ev))
					}
				}
				require.Equal(t, outcomes[1], outcomes[0], "round %d: the outcomes differ", round)
			}
			// The same log, steps and transitions.
			var logs [2][]*backends.Event
			var steps [2][][]*backends.Step
			var trails [2][][]backends.Transition
			for si, s := range stores {
				evs, err := s.ListEvents(ctx, &backends.EventQuery{Limit: 10000})
				require.NoError(t, err)
				logs[si] = evs
				tasks, err := s.ListTasks(ctx, &backends.ListTasksParams{Limit: 100})
				require.NoError(t, err)
				for _, task := range tasks {
					st, err := s.ListSteps(ctx, task.ID)
					require.NoError(t, err)
					steps[si] = append(steps[si], st)
					tr, err := s.ListTransitions(ctx, task.ID)
					require.NoError(t, err)
					var trail []backends.Transition
					for _, x := range tr {
						x.ID = 0 // ids interleave tasks differently; the order per task is what counts
						trail = append(trail, *x)
					}
					trails[si] = append(trails[si], trail)
				}
			}
			require.NotEmpty(t, logs[0])
			setsWritten.Add(int64(sets.setsWritten))
			require.Zero(t, alone.setsWritten)
			require.Equal(t, logs[1], logs[0])
			require.Equal(t, steps[1], steps[0])
			require.Equal(t, trails[1], trails[0])
		})
	}
}
