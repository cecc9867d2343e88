package engine_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
	"github.com/taskerd/taskerd/engine"
)

const twoStepsHCL = `
workflow "pair" {
  step "first" {
    handler = "builtin.noop"
    retry {
      limit = 3
      base  = "10ms"
      max   = "1s"
    }
  }
  step "second" {
    handler    = "builtin.noop"
    depends_on = [step.first]
  }
}
`

// twoNodes is node B, an idle engine whose safety poll is an hour away, and
// node A, another store on the same PostgreSQL database that writes as a
// node would (its own claims and results), with an engine of its own that
// is never run (for CreateTask and operator actions). Whatever B runs
// within the test's deadline, it learned of from A's notifications.
// startB starts node B and returns once its loop is idle: past its first
// lease recovery and claim, so that what it runs afterwards it was woken
// for.
func twoNodes(t *testing.T) (a *testBundle, storeA *postgres.Store, b *testBundle, startB func()) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	open := func() *postgres.Store {
		s, err := postgres.Open(context.Background(), dsn, postgres.WithoutMigrate())
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	catalog := parseWorkflows(t, twoStepsHCL)
	storeA = open()
	a = setup(t, storeA, catalog, func(c *engine.Config) { c.NodeID = "A" })
	logger, idle := idleSignal()
	b = setup(t, open(), catalog, func(c *engine.Config) {
		c.NodeID, c.SafetyPoll, c.Logger = "B", time.Hour, logger
	})
	return a, storeA, b, func() {
		b.start()
		<-idle
	}
}

// idleSignal is a logger whose channel closes at the engine's first
// "idle" line: its loop has recovered leases and claimed once, and waits.
func idleSignal() (*slog.Logger, <-chan struct{}) {
	h := &idleHandler{idle: make(chan struct{})}
	return slog.New(h), h.idle
}

type idleHandler struct {
	once sync.Once
	idle chan struct{}
}

func (h *idleHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *idleHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *idleHandler) WithGroup(string) slog.Handler            { return h }
func (h *idleHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "idle" {
		h.once.Do(func() { close(h.idle) })
	}
	return nil
}

// claimFirst claims a task's first step as node A.
func claimFirst(t *testing.T, s backends.Store, taskID int64, queued int) *backends.Claim {
	t.Helper()
	claims, err := s.ClaimSteps(context.Background(), &backends.ClaimStepsParams{
		Owner: "A", Limit: 1, Queued: queued, LeaseDuration: time.Minute, Now: time.Now(),
	})
	require.NoError(t, err)
	require.Len(t, claims, 1)
	require.Equal(t, taskID, claims[0].Step.TaskID)
	require.Equal(t, "first", claims[0].Step.Name)
	return claims[0]
}

// ranOnB waits for node B to start the step and returns the event.
func ranOnB(b *testBundle, taskID int64, step string) engine.Event {
	return b.waitEvent(isEvent(engine.EventStepExecutionRequested, taskID, step), "node B starting "+step)
}

func TestIdleNodeRunsATaskCreatedByAnother(t *testing.T) {
	t.Parallel()
	a, _, b, startB := twoNodes(t)
	startB()
	task := a.create("pair", "")
	ranOnB(b, task.ID, "first")
	b.waitTask(task.ID, backends.StateComplete)
}

func TestIdleNodeRunsChildrenAnotherNodeMadeReady(t *testing.T) {
	t.Parallel()
	a, storeA, b, startB := twoNodes(t)
	task := a.create("pair", "")
	c := claimFirst(t, storeA, task.ID, 0)
	// B starts with "first" leased to A and "second" waiting for it.
	startB()
	_, err := storeA.CompleteStep(context.Background(), &backends.CompleteStepParams{
		StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Results: json.RawMessage(`{}`), Now: time.Now(),
	})
	require.NoError(t, err)
	ranOnB(b, task.ID, "second")
	b.waitTask(task.ID, backends.StateComplete)
}

func TestIdleNodeRetriesAtTheBackoffAnotherNodeRecorded(t *testing.T) {
	t.Parallel()
	a, storeA, b, startB := twoNodes(t)
	task := a.create("pair", "")
	c := claimFirst(t, storeA, task.ID, 0)
	startB()
	// The handler on A asks for a 1s backoff: B learns of it only from the
	// notification, which carries the instant.
	backoff := 1
	failedAt := time.Now()
	_, err := storeA.FailStep(context.Background(), &backends.FailStepParams{
		StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, BackoffSeconds: &backoff, Now: failedAt,
		Error: backends.StepError{Message: "try later", Retryable: true},
	})
	require.NoError(t, err)
	ev := ranOnB(b, task.ID, "first")
	require.Equal(t, 2, ev.Attempt)
	require.False(t, ev.Time.Before(failedAt.Add(time.Second)), "the retry waited for its backoff")
	b.waitTask(task.ID, backends.StateComplete)
}

func TestIdleNodeRunsWhatAnOperatorRetriedOrResolvedElsewhere(t *testing.T) {
	t.Parallel()
	for _, action := range []string{"retry", "resolve"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			a, storeA, b, startB := twoNodes(t)
			task := a.create("pair", "")
			c := claimFirst(t, storeA, task.ID, 0)
			_, err := storeA.FailStep(context.Background(), &backends.FailStepParams{
				StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Now: time.Now(),
				Error: backends.StepError{Message: "broken", Retryable: false},
			})
			require.NoError(t, err)
			got, err := storeA.GetTask(context.Background(), task.ID)
			require.NoError(t, err)
			require.Equal(t, backends.StateError, got.State)
			startB()
			next := "first"
			if action == "retry" {
				_, err = storeA.RetryStep(context.Background(), &backends.RetryStepParams{StepID: c.Step.ID, Reason: "fixed", Now: time.Now()})
			} else {
				next = "second"
				_, err = storeA.ResolveStep(context.Background(), &backends.ResolveStepParams{StepID: c.Step.ID, Reason: "done by hand", Now: time.Now()})
			}
			require.NoError(t, err)
			ranOnB(b, task.ID, next)
			b.waitTask(task.ID, backends.StateComplete)
		})
	}
}

// A node that stops gives back the steps it claimed ahead and had not
// started (releasing them is a lease recovery): an idle node takes them at
// once, not when their lease would have expired.
func TestIdleNodeTakesStepsAnotherNodeReleased(t *testing.T) {
	t.Parallel()
	a, storeA, b, startB := twoNodes(t)
	task := a.create("pair", "")
	c := claimFirst(t, storeA, task.ID, 1) // queued: its handler never started
	require.Nil(t, c.Step.StartedAt)
	startB() // past its first lease recovery: it does not release the step itself
	_, err := storeA.ExtendLeases(context.Background(), &backends.ExtendLeasesParams{
		Owner: "A", Leases: []backends.Lease{{StepID: c.Step.ID, Token: c.Step.LeaseToken}}, LeaseDuration: 0, Now: time.Now(),
	})
	require.NoError(t, err)
	rs, err := storeA.RecoverExpiredLeases(context.Background(), &backends.RecoverParams{Limit: 10, Now: time.Now()})
	require.NoError(t, err)
	require.Len(t, rs, 1)
	ev := ranOnB(b, task.ID, "first")
	require.Equal(t, 1, ev.Attempt, "a released claim does not count as an attempt")
	b.waitTask(task.ID, backends.StateComplete)
}
