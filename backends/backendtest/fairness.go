package backendtest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// testFairness: claim order across tasks (backends.Store's ClaimSteps) and
// the concurrency limits of ClaimStepsParams.Limits.
func testFairness(t *testing.T, newStore func(t *testing.T) backends.Store) {
	// A task with nothing in_progress goes before a busy one: a task
	// created while a wide fan-out runs has its step in the first claim
	// after its creation, whatever the claim's limit and the width.
	t.Run("WideTaskDoesNotStarveALaterTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		const width = 10_000
		steps := make([]backends.NewStep, width)
		for i := range steps {
			steps[i] = step(fmt.Sprintf("w%05d", i))
		}
		wide := b.createAt(base, steps...)
		// The fan-out runs: two claims of 32, all of them its steps, by
		// position.
		var running []*backends.Claim
		for round := range 2 {
			cs := b.claim(32, at(time.Second))
			require.Len(t, cs, 32)
			for i, c := range cs {
				require.Equal(t, wide.ID, c.Task.ID)
				require.Equal(t, fmt.Sprintf("w%05d", round*32+i), c.Step.Name)
			}
			running = append(running, cs...)
		}

		for i, limit := range []int{1, 2, 32} {
			now := at(time.Duration(2+i) * time.Second)
			later := b.createAt(now, step("late"))
			cs := b.claim(limit, now)
			require.Len(t, cs, limit)
			require.Equal(t, later.ID, cs[0].Task.ID, "limit %d: the later task first", limit)
			for _, c := range cs[1:] {
				require.Equal(t, wide.ID, c.Task.ID, "limit %d", limit)
			}
			running = append(running, cs[1:]...)
		}

		// Once nothing of the wide task runs, it is the older idle task:
		// its head goes first, then the later task's.
		for _, c := range running {
			b.complete(c, at(10*time.Second))
		}
		later := b.createAt(at(11*time.Second), step("late"))
		cs := b.claim(1, at(11*time.Second))
		require.Equal(t, []int64{wide.ID}, claimTaskIDs(cs))
		cs = b.claim(1, at(11*time.Second))
		require.Equal(t, []int64{later.ID}, claimTaskIDs(cs))
	})

	// Heads of idle tasks (oldest first), heads of busy ones (oldest
	// first), then the rest by task and position.
	t.Run("IdleHeadsThenBusyHeadsThenTheRest", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		b.create(step("a1"), step("b1"), step("c1"))
		b.create(step("a2"), step("b2"), step("c2"))
		b.create(step("a3"), step("b3"))
		require.Equal(t, []string{"a1"}, claimedNames(b.claim(1, base)))
		require.Equal(t, []string{"a2", "a3", "b1", "c1"}, claimedNames(b.claim(4, base)))
		require.Equal(t, []string{"b2", "b3", "c2"}, claimedNames(b.claim(10, base)))
	})

	t.Run("LimitCapsRunningStepsOfAWorkflow", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		limits := map[string]int{"shop/orders": 2}
		// 10 ready steps of shop/orders over 5 tasks and two versions; a
		// task of another workflow of the same name in another namespace,
		// and one of another workflow, after them.
		var limited []int64
		for i := range 5 {
			version := "1.0.0"
			if i%2 == 1 {
				version = "2.0.0"
			}
			limited = append(limited, b.createWorkflowTask("shop", "orders", version, at(0), step("a"), step("b")).ID)
		}
		other := b.createWorkflowTask("billing", "orders", "1.0.0", at(time.Second), step("x"))
		free := b.createWorkflowTask("shop", "refunds", "1.0.0", at(time.Second), step("y"), step("z"))

		cs := b.claimWith(20, 0, limits, at(2*time.Second))
		require.Equal(t, []string{"a", "a", "x", "y", "z"}, claimedNames(cs),
			"two heads of the limited workflow (the oldest tasks'); its other steps give their places to the rest")
		require.Equal(t, []int64{limited[0], limited[1], other.ID, free.ID, free.ID}, claimTaskIDs(cs))
		require.Empty(t, b.claimWith(20, 0, limits, at(3*time.Second)), "at its limit")
		require.Equal(t, 2, b.inProgress(limited...))

		// One ends: one more, the oldest ready head (the same task's b).
		b.complete(cs[0], at(4*time.Second))
		more := b.claimWith(20, 0, limits, at(5*time.Second))
		require.Equal(t, []int64{limited[0]}, claimTaskIDs(more))
		require.Equal(t, 2, b.inProgress(limited...))

		// A failure frees a place too; the failed step waits for its
		// backoff, so the next ready head is the third task's.
		b.fail(cs[1], true, nil, at(6*time.Second))
		more = b.claimWith(20, 0, limits, at(6*time.Second))
		require.Equal(t, []int64{limited[2]}, claimTaskIDs(more))

		// Without the limit (another node's catalog has none) the rest go.
		require.Len(t, b.claimWith(20, 0, nil, at(7*time.Second)), 6)
	})

	t.Run("LimitCountsStepsThatWaitForAWorker", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		limits := map[string]int{"shop/orders": 3}
		for range 3 {
			b.createWorkflowTask("shop", "orders", "1.0.0", at(0), step("a"), step("b"))
		}
		cs := b.claimWith(2, 2, limits, at(time.Second))
		require.Len(t, cs, 2)
		for _, c := range cs {
			require.Nil(t, c.Step.StartedAt, "waits for a worker")
		}
		require.Len(t, b.claimWith(5, 0, limits, at(time.Second)), 1, "two of three places are taken by queued steps")
		require.Empty(t, b.claimWith(5, 0, limits, at(time.Second)))
	})

	t.Run("LimitBelowOneClaimsNothingOfTheWorkflow", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		b.createWorkflowTask("shop", "orders", "1.0.0", at(0), step("a"))
		free := b.createWorkflowTask("shop", "refunds", "1.0.0", at(0), step("b"))
		cs := b.claimWith(5, 0, map[string]int{"shop/orders": 0}, at(time.Second))
		require.Equal(t, []int64{free.ID}, claimTaskIDs(cs))
	})

	// Claimers with their own owners, all at once, never leave more than
	// the limit in_progress: after every claim, a consistent count
	// (Stats: one snapshot) says so. On PostgreSQL the claims run in
	// parallel; each claimer completes what it claimed before claiming
	// again, so the work ends.
	t.Run("ConcurrentClaimersKeepTheLimit", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		const limit, claimers, tasks = 3, 6, 12
		limits := map[string]int{"shop/orders": limit}
		for range tasks {
			b.createWorkflowTask("shop", "orders", "1.0.0", at(0), step("a"), step("b"), step("c"), step("d", "a"))
		}
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			claimed  = map[int64]bool{}
			maxSeen  int
			deadline = time.Now().Add(2 * time.Minute)
		)
		for w := range claimers {
			owner := name("node-%d", w)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: owner, Limit: 2,
						Limits: limits, LeaseDuration: lease, Now: at(time.Second)})
					if !assert.NoError(t, err) {
						return
					}
					st, err := b.store.Stats(b.ctx, at(time.Second))
					if !assert.NoError(t, err) {
						return
					}
					running := st.Steps[backends.StateInProgress]
					assert.LessOrEqual(t, running, limit, "steps in_progress after a claim of %s", owner)
					mu.Lock()
					maxSeen = max(maxSeen, running)
					for _, c := range cs {
						assert.False(t, claimed[c.Step.ID], "claimed twice")
						claimed[c.Step.ID] = true
					}
					done := len(claimed) == tasks*4
					mu.Unlock()
					for _, c := range cs {
						_, err := b.store.CompleteStep(b.ctx, &backends.CompleteStepParams{StepID: c.Step.ID,
							LeaseToken: c.Step.LeaseToken, Results: json.RawMessage(`{}`), Now: at(time.Second)})
						if !assert.NoError(t, err) {
							return
						}
					}
					if done || t.Failed() {
						return
					}
				}
			}()
		}
		wg.Wait()
		require.Len(t, claimed, tasks*4, "every step ran")
		require.Positive(t, maxSeen)
		t.Logf("most steps in_progress seen after a claim: %d", maxSeen)
	})
}

func (b *bundle) createWorkflowTask(namespace, workflow, version string, now time.Time, steps ...backends.NewStep) *backends.Task {
	b.t.Helper()
	task, _, err := b.store.CreateTask(b.ctx, &backends.CreateTaskParams{
		Namespace: namespace, WorkflowName: workflow, WorkflowVersion: version,
		Context: json.RawMessage(`{}`), Steps: steps, Now: now,
	})
	require.NoError(b.t, err)
	return task
}

func (b *bundle) claimWith(limit, queued int, limits map[string]int, now time.Time) []*backends.Claim {
	b.t.Helper()
	cs, err := b.store.ClaimSteps(b.ctx, &backends.ClaimStepsParams{Owner: "node-1", Limit: limit, Queued: queued,
		Limits: limits, LeaseDuration: lease, Now: now})
	require.NoError(b.t, err)
	return cs
}

// inProgress counts the in_progress steps of the tasks.
func (b *bundle) inProgress(taskIDs ...int64) int {
	b.t.Helper()
	n := 0
	for _, id := range taskIDs {
		for _, s := range b.steps(id) {
			if s.State == backends.StateInProgress {
				n++
			}
		}
	}
	return n
}

func claimTaskIDs(cs []*backends.Claim) []int64 {
	ids := []int64{}
	for _, c := range cs {
		ids = append(ids, c.Task.ID)
	}
	return ids
}
