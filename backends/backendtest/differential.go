package backendtest

import (
	"errors"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
)

// SeedEnv names the environment variable that fixes the differential test's
// seed: TASKERD_DIFF_SEED=1234 go test ./backends/sqlite -run Differential.
const SeedEnv = "TASKERD_DIFF_SEED"

const (
	diffWorkers            = 4 // stores driven in parallel, each from its own stream of the seed
	diffMaxOpsPerWorker    = 4000
	diffComparisonsPerStep = 3
)

// diffStatesPerWorker and diffMinOpsPerWorker size one worker's run: at
// least that many (task, instant) comparisons and Store operations. Under
// -race the run shrinks to the required 500 states in all.
var (
	diffStatesPerWorker = map[bool]int{false: 200, true: 125}[raceEnabled]
	diffMinOpsPerWorker = map[bool]int{false: 300, true: 60}[raceEnabled]
)

// testDifferential drives real Store operations on random DAGs and, at
// random instants (and at the exact edges of backoffs and leases), compares
// the store's readiness and execution context, single and batch, with
// engine's Go reference, field by field.
func testDifferential(t *testing.T, newStore func(t *testing.T) backends.Store) {
	seed := time.Now().UnixNano()
	if v := os.Getenv(SeedEnv); v != "" {
		var err error
		seed, err = strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, "%s=%q", SeedEnv, v)
	}
	t.Logf("differential seed %d (reproduce with %s=%d)", seed, SeedEnv, seed)
	var states atomic.Int64
	t.Run("Workers", func(t *testing.T) {
		for w := 0; w < diffWorkers; w++ {
			t.Run(name("Worker%d", w), func(t *testing.T) {
				t.Parallel()
				d := &differ{bundle: setup(t, newStore), rng: rand.New(rand.NewPCG(uint64(seed), uint64(w))), clock: base}
				d.run()
				states.Add(int64(d.states))
				t.Logf("%d states compared after %d operations on %d tasks", d.states, d.ops, len(d.tasks))
			})
		}
	})
	if !t.Failed() {
		require.GreaterOrEqual(t, states.Load(), int64(500))
	}
}

type differ struct {
	*bundle
	rng    *rand.Rand
	clock  time.Time
	tasks  []int64
	claims []*backends.Claim // as handed out, including ones gone stale
	states int
	ops    int
}

func (d *differ) run() {
	for i := 0; i < 3; i++ {
		d.newTask()
	}
	for (d.states < diffStatesPerWorker || d.ops < diffMinOpsPerWorker) && d.ops < diffMaxOpsPerWorker {
		d.ops++
		d.step()
		if d.rng.IntN(3) == 0 {
			d.compareSome()
		}
	}
	require.GreaterOrEqual(d.t, d.states, diffStatesPerWorker)
	for _, id := range d.tasks {
		d.checkTransitions(id)
	}
}

func (d *differ) pick(n int) int { return d.rng.IntN(n) }

// newTask creates a random DAG: 1–15 steps, each with random parents among
// the earlier ones, and random retry policies.
func (d *differ) newTask() {
	n := 1 + d.pick(15)
	density := d.rng.Float64() * 0.6
	bases := []time.Duration{time.Millisecond, 10 * time.Millisecond, 250 * time.Millisecond, time.Second, 3 * time.Second}
	maxes := []time.Duration{time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second, 30 * time.Second, 90 * time.Second}
	steps := make([]backends.NewStep, n)
	for i := range steps {
		s := step(name("s%d", i))
		s.Parents = nil
		for p := 0; p < i; p++ {
			if d.rng.Float64() < density {
				s.Parents = append(s.Parents, name("s%d", p))
			}
		}
		s.RetryLimit = 1 + d.pick(5)
		s.Retryable = d.pick(5) != 0
		s.BackoffBase = bases[d.pick(len(bases))]
		s.BackoffMax = maxes[d.pick(len(maxes))]
		s.Bypass = d.pick(20) == 0
		steps[i] = s
	}
	task := d.createAt(d.clock, steps...)
	d.tasks = append(d.tasks, task.ID)
}

// step performs one random operation. Refusals the state machine or the
// fencing may legitimately answer are accepted; anything else fails.
func (d *differ) step() {
	ctx, s := d.ctx, d.store
	okErr := func(err error) {
		d.t.Helper()
		if err == nil || errors.Is(err, backends.ErrInvalidTransition) || errors.Is(err, backends.ErrLeaseLost) {
			return
		}
		require.NoError(d.t, err)
	}
	switch op := d.pick(100); {
	case op < 20: // the clock moves: a little, a lot, or to the edge of something
		d.advance()
	case op < 40:
		limit := 1 + d.pick(4)
		cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "diff", Limit: limit, Queued: d.pick(limit + 1),
			LeaseDuration: time.Duration(5+d.pick(85)) * time.Second, Now: d.clock})
		require.NoError(d.t, err)
		d.claims = append(d.claims, cs...)
	case op < 55 && len(d.claims) > 0:
		c := d.claims[d.pick(len(d.claims))]
		_, err := s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Now: d.clock})
		okErr(err)
	case op < 70 && len(d.claims) > 0:
		c := d.claims[d.pick(len(d.claims))]
		var backoff *int
		if d.pick(3) == 0 {
			backoff = ptr(d.pick(20))
		}
		retryable := d.pick(5) != 0
		kind := backends.ErrorKindHandler
		if !retryable {
			kind = backends.ErrorKindPermanent
		}
		_, err := s.FailStep(ctx, &backends.FailStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken,
			Error: backends.StepError{Message: "random", Retryable: retryable, Kind: kind}, BackoffSeconds: backoff, Now: d.clock})
		okErr(err)
	case op < 76:
		_, err := s.RecoverExpiredLeases(ctx, &backends.RecoverParams{Limit: 1 + d.pick(5), Now: d.clock})
		require.NoError(d.t, err)
	case op < 78 && len(d.claims) > 0:
		c := d.claims[d.pick(len(d.claims))]
		_, err := s.StartStep(ctx, &backends.StartStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Owner: "diff",
			LeaseDuration: time.Duration(1+d.pick(60)) * time.Second, Now: d.clock})
		okErr(err)
	case op < 80 && len(d.claims) > 0:
		c := d.claims[d.pick(len(d.claims))]
		_, err := s.ExtendLeases(ctx, &backends.ExtendLeasesParams{Owner: "diff", LeaseDuration: time.Duration(1+d.pick(60)) * time.Second,
			Now: d.clock, Leases: []backends.Lease{{StepID: c.Step.ID, Token: c.Step.LeaseToken}}})
		require.NoError(d.t, err)
	case op < 84:
		_, err := s.ResolveStep(ctx, &backends.ResolveStepParams{StepID: d.randomStep().ID, Now: d.clock})
		okErr(err)
	case op < 86:
		_, err := s.CancelStep(ctx, &backends.CancelStepParams{StepID: d.randomStep().ID, Now: d.clock})
		okErr(err)
	case op < 91:
		_, err := s.RetryStep(ctx, &backends.RetryStepParams{StepID: d.randomStep().ID, Now: d.clock})
		okErr(err)
	case op < 93:
		_, err := s.RetryTask(ctx, &backends.RetryTaskParams{TaskID: d.tasks[d.pick(len(d.tasks))], Now: d.clock})
		okErr(err)
	case op < 94:
		_, err := s.CancelTask(ctx, &backends.CancelTaskParams{TaskID: d.tasks[d.pick(len(d.tasks))], Now: d.clock})
		okErr(err)
	case op < 95:
		_, err := s.ResolveTask(ctx, &backends.ResolveTaskParams{TaskID: d.tasks[d.pick(len(d.tasks))], Now: d.clock})
		okErr(err)
	case op < 98 && len(d.tasks) < 40:
		d.newTask()
	default:
		d.advance()
	}
}

func (d *differ) randomStep() *backends.Step {
	steps := d.steps(d.tasks[d.pick(len(d.tasks))])
	for len(steps) == 0 {
		steps = d.steps(d.tasks[d.pick(len(d.tasks))])
	}
	return steps[d.pick(len(steps))]
}

// edges lists the instants where something changes for a task's steps.
func (d *differ) edgesOf(taskID int64) []time.Time {
	var out []time.Time
	rows, err := d.store.StepReadiness(d.ctx, taskID, d.clock)
	require.NoError(d.t, err)
	for _, r := range rows {
		if r.NextRetryAt != nil {
			out = append(out, *r.NextRetryAt)
		}
	}
	for _, s := range d.steps(taskID) {
		if s.LeaseExpiresAt != nil {
			out = append(out, *s.LeaseExpiresAt)
		}
	}
	return out
}

func (d *differ) advance() {
	switch d.pick(4) {
	case 0:
		d.clock = d.clock.Add(time.Duration(d.pick(1000)) * time.Microsecond)
	case 1:
		d.clock = d.clock.Add(time.Duration(d.pick(5000)) * time.Millisecond)
	case 2:
		d.clock = d.clock.Add(time.Duration(d.pick(120)) * time.Second)
	default: // onto (or just before) the next edge
		edges := d.edgesOf(d.tasks[d.pick(len(d.tasks))])
		if len(edges) == 0 {
			return
		}
		e := edges[d.pick(len(edges))].Add(-time.Duration(d.pick(2)) * time.Microsecond)
		if e.After(d.clock) {
			d.clock = e
		}
	}
}

// compareSome compares a few tasks at a few instants: now, the edges of
// their backoffs and leases (and a microsecond either side), and random
// instants ahead.
func (d *differ) compareSome() {
	ids := make([]int64, 0, 4)
	for i := 0; i < 1+d.pick(4); i++ {
		ids = append(ids, d.tasks[d.pick(len(d.tasks))])
	}
	instants := []time.Time{d.clock, d.clock.Add(time.Duration(d.pick(60_000_000)) * time.Microsecond)}
	for _, id := range ids[:1] {
		edges := d.edgesOf(id)
		for i := 0; i < diffComparisonsPerStep && len(edges) > 0; i++ {
			e := edges[d.pick(len(edges))]
			instants = append(instants, e.Add(time.Duration(d.pick(3)-1)*time.Microsecond))
		}
	}
	for _, now := range instants {
		d.compare(ids, now)
	}
}

// normRow is a ReadinessRow with times as unix microseconds, so that a diff
// reads plainly.
type normRow struct {
	StepID, TaskID                                  int64
	Name                                            string
	State                                           backends.State
	Deps, Eligible, Ready                           bool
	LastFailureAt, NextRetryAt, LastAttemptedAt     *int64
	TotalParents, CompletedParents, Attempts, Limit int
	BackoffRequestSeconds                           *int
}

func normTime(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	us := t.UnixMicro()
	return &us
}

func norm(rows []backends.ReadinessRow) []normRow {
	out := make([]normRow, len(rows))
	for i, r := range rows {
		out[i] = normRow{r.StepID, r.TaskID, r.Name, r.CurrentState, r.DependenciesSatisfied, r.RetryEligible,
			r.ReadyForExecution, normTime(r.LastFailureAt), normTime(r.NextRetryAt), normTime(r.LastAttemptedAt),
			r.TotalParents, r.CompletedParents, r.Attempts, r.RetryLimit, r.BackoffRequestSeconds}
	}
	return out
}

// compare checks the store against the reference for each task at now,
// single and batch.
func (d *differ) compare(ids []int64, now time.Time) {
	d.t.Helper()
	sorted := append([]int64(nil), ids...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	var wantRows []backends.ReadinessRow
	var wantCtx []backends.ExecutionContext
	seen := map[int64]bool{}
	for _, id := range sorted {
		if seen[id] {
			continue
		}
		seen[id] = true
		steps := d.steps(id)
		edges, err := d.store.ListEdges(d.ctx, id)
		require.NoError(d.t, err)
		want := engine.ReferenceReadiness(steps, edges, now)
		got, err := d.store.StepReadiness(d.ctx, id, now)
		require.NoError(d.t, err)
		require.Equal(d.t, norm(want), norm(got), "readiness of task %d at %s", id, now)
		for i := range want { // the time values themselves, not just their microseconds
			require.True(d.t, equalTime(want[i].NextRetryAt, got[i].NextRetryAt))
		}
		task, err := d.store.GetTask(d.ctx, id)
		require.NoError(d.t, err)
		wantEC := engine.ReferenceExecutionContext(id, task.State, want)
		gotEC, err := d.store.TaskExecutionContext(d.ctx, id, now)
		require.NoError(d.t, err)
		require.Equal(d.t, wantEC, *gotEC, "execution context of task %d at %s", id, now)
		if !now.Before(d.clock) {
			// Not before the last write: the task's state must agree.
			requireAgreement(d.t, task, wantEC)
		}
		wantRows = append(wantRows, want...)
		wantCtx = append(wantCtx, wantEC)
		d.states++
	}
	gotRows, err := d.store.StepReadinessBatch(d.ctx, ids, now)
	require.NoError(d.t, err)
	require.Equal(d.t, norm(wantRows), norm(gotRows), "batch readiness of %v at %s", ids, now)
	gotCtx, err := d.store.TaskExecutionContexts(d.ctx, ids, now)
	require.NoError(d.t, err)
	require.Equal(d.t, wantCtx, gotCtx, "batch contexts of %v at %s", ids, now)
}

// requireAgreement holds a task's state and its execution context, at or
// after the task's last write, to each other (SEMANTICS §4 and §5.5): a task
// is in error only when nothing can run; a task still running has something
// ready, running or waiting out a backoff; a finished task's context says
// what finished it.
func requireAgreement(t *testing.T, task *backends.Task, ec backends.ExecutionContext) {
	t.Helper()
	switch task.State {
	case backends.StateError:
		require.Equal(t, backends.StatusBlockedByFailures, ec.ExecutionStatus, "task %d is in error: %+v", task.ID, ec)
		require.Zero(t, ec.ReadySteps+ec.InProgressSteps+ec.WaitingSteps, "task %d is in error with a step that may run: %+v", task.ID, ec)
	case backends.StatePending, backends.StateInProgress:
		switch ec.ExecutionStatus {
		case backends.StatusHasReadySteps, backends.StatusProcessing:
		case backends.StatusWaitingForDependencies:
			require.Positive(t, ec.WaitingSteps, "task %d is %s with nothing that can run: %+v", task.ID, task.State, ec)
		default:
			require.Failf(t, "state and context disagree", "task %d is %s: %+v", task.ID, task.State, ec)
		}
	case backends.StateComplete:
		require.Equal(t, backends.StatusAllComplete, ec.ExecutionStatus, "task %d: %+v", task.ID, ec)
	case backends.StateCancelled:
		require.Equal(t, backends.StatusCancelled, ec.ExecutionStatus, "task %d: %+v", task.ID, ec)
		require.Equal(t, backends.HealthCancelled, ec.HealthStatus, "task %d: %+v", task.ID, ec)
	}
}

func equalTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b) && b.Location() == time.UTC
}
