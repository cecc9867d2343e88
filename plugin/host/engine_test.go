package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/plugin/host"
)

// e2e is an engine whose registry holds the builtins and the test plugin.
type e2e struct {
	eng    *engine.Engine
	store  backends.Store
	p      *host.Plugin
	events <-chan engine.Event
}

func startEngine(t *testing.T, open func(testing.TB) backends.Store, src string) *e2e {
	t.Helper()
	b := startTestPlugin(t, nil)
	reg := builtin.NewRegistry()
	require.NoError(t, b.host.Register(reg))
	return startEngineWith(t, open, src, b, reg)
}

// startEngineWith runs an engine over reg (which holds b's handlers).
func startEngineWith(t *testing.T, open func(testing.TB) backends.Store, src string, b *bundle, reg *engine.Registry) *e2e {
	t.Helper()

	wfs, diags := definition.NewParser().ParseSource("wf.hcl", []byte(src))
	require.False(t, diags.HasErrors(), diags.Error())
	cat := definition.NewCatalog(wfs)
	require.NoError(t, host.CheckWorkflows(cat, reg))

	store := open(t)
	eng, err := engine.New(engine.Config{Store: store, Catalog: cat, Registry: reg, Workers: 8, LeaseDuration: 3 * time.Second})
	require.NoError(t, err)
	events, unsubscribe := eng.Subscribe(4096)
	t.Cleanup(unsubscribe)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &e2e{eng: eng, store: store, p: b.p, events: events}
}

func (e *e2e) create(t *testing.T, workflow string, taskContext string) int64 {
	t.Helper()
	task, _, err := e.eng.CreateTask(context.Background(), engine.CreateRequest{Workflow: workflow, Context: json.RawMessage(taskContext)})
	require.NoError(t, err)
	return task.ID
}

func (e *e2e) waitTask(t *testing.T, id int64, want backends.State) map[string]*backends.Step {
	t.Helper()
	var last backends.State
	eventually(t, 30*time.Second, func() bool {
		task, err := e.store.GetTask(context.Background(), id)
		require.NoError(t, err)
		last = task.State
		return task.State == want
	}, "task %d is %s, want %s", id, &last, want)
	steps, err := e.store.ListSteps(context.Background(), id)
	require.NoError(t, err)
	byName := map[string]*backends.Step{}
	for _, s := range steps {
		byName[s.Name] = s
	}
	return byName
}

func stepError(t *testing.T, s *backends.Step) backends.StepError {
	t.Helper()
	var se backends.StepError
	require.NoError(t, json.Unmarshal(s.Error, &se), string(s.Error))
	return se
}

const orderWF = `workflow "order" {
  retry {
    limit = 3
    base  = "5ms"
    max   = "20ms"
  }
  step "validate" {
    handler = "testp.echo"
    config  = { currency = "EUR" }
  }
  step "ship" {
    handler    = "testp.crash_once"
    depends_on = [step.validate]
    config     = { marker = "%s" }
  }
  step "notify" {
    handler    = "builtin.echo"
    depends_on = [step.ship]
  }
}
`

// sdkPlugins are the test plugins of the two SDKs, for tests that must
// hold for both: the Go one (testdata/testplugin, plugin "testp") and the
// TypeScript one (testdata/tsplugin, plugin "tsp"). Their handlers share
// names and behaviour.
var sdkPlugins = []struct {
	name, plugin string
	start        func(t *testing.T, open func(testing.TB) backends.Store, src string) *e2e
	// cancelled is what the block handler writes to its marker when its
	// call is cancelled: the error of its ctx, the name of its signal's
	// reason.
	cancelled string
}{
	{"go", "testp", startEngine, context.Canceled.Error()},
	{"typescript", "tsp", startTSEngine, "AbortError"},
}

// forSDK is src, a workflow written for the Go test plugin, for sdk's.
func forSDK(src, plugin string) string {
	return strings.ReplaceAll(src, "testp.", plugin+".")
}

// A workflow runs end to end through a plugin, and a plugin that dies
// mid-call costs the step one attempt: it retries on the new process.
func TestWorkflowThroughPluginSurvivesACrash(t *testing.T) {
	t.Parallel()
	for _, sdk := range sdkPlugins {
		for _, sc := range storetest.Backends() {
			t.Run(sdk.name+"/"+sc.Name, func(t *testing.T) {
				t.Parallel()
				testWorkflowSurvivesACrash(t, sdk.start(t, sc.Open,
					forSDK(fmt.Sprintf(orderWF, filepath.Join(t.TempDir(), "crashed")), sdk.plugin)))
			})
		}
	}
}

func testWorkflowSurvivesACrash(t *testing.T, e *e2e) {
	t.Helper()
	firstPid := e.p.Pid()
	id := e.create(t, "order", `{"order_id":"A-1"}`)
	steps := e.waitTask(t, id, backends.StateComplete)

	var validate struct {
		Context map[string]string `json:"context"`
		Config  map[string]string `json:"config"`
		Pid     int               `json:"pid"`
	}
	require.NoError(t, json.Unmarshal(steps["validate"].Results, &validate))
	require.Equal(t, "A-1", validate.Context["order_id"])
	require.Equal(t, "EUR", validate.Config["currency"])
	require.Equal(t, firstPid, validate.Pid)

	ship := steps["ship"]
	require.Equal(t, 2, ship.Attempts, "the crashed attempt counts")
	var shipped struct{ Attempt, Pid int }
	require.NoError(t, json.Unmarshal(ship.Results, &shipped))
	require.Equal(t, 2, shipped.Attempt)
	require.NotEqual(t, firstPid, shipped.Pid, "the retry ran on the restarted plugin")
	require.Equal(t, 1, e.p.Restarts())

	// Events are published after their transaction commits, so the
	// failure's event is already queued: the task completed later.
	var failures []string
	for _, ev := range drainEvents(e) {
		if ev.Type == engine.EventStepFailed && ev.StepName == "ship" {
			failures = append(failures, ev.Error.Kind)
		}
	}
	require.Equal(t, []string{backends.ErrorKindPluginCrashed}, failures)

	var notify struct {
		Parents map[string]json.RawMessage `json:"parents"`
	}
	require.NoError(t, json.Unmarshal(steps["notify"].Results, &notify))
	require.JSONEq(t, string(ship.Results), string(notify.Parents["ship"]))
}

const blockWF = `workflow "wait" {
  step "wait" {
    handler = "testp.block"
    config  = { marker = "%s", started = "%s" }
  }
}
`

// Cancelling the task cancels the plugin call: the handler's ctx (Go) or
// AbortSignal (TypeScript) ends, the task and step end cancelled, and the
// plugin stays up.
func TestCancellingATaskCancelsThePluginCall(t *testing.T) {
	t.Parallel()
	for _, sdk := range sdkPlugins {
		for _, sc := range storetest.Backends() {
			t.Run(sdk.name+"/"+sc.Name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				marker, started := filepath.Join(dir, "why"), filepath.Join(dir, "started")
				e := sdk.start(t, sc.Open, forSDK(fmt.Sprintf(blockWF, marker, started), sdk.plugin))
				id := e.create(t, "wait", `{}`)
				eventually(t, 10*time.Second, func() bool { _, err := os.Stat(started); return err == nil }, "the step never reached the plugin")
				_, err := e.eng.CancelTask(context.Background(), id, "test")
				require.NoError(t, err)
				eventually(t, 10*time.Second, func() bool {
					b, err := os.ReadFile(marker)
					return err == nil && string(b) == sdk.cancelled
				}, "the handler's call in the plugin was not cancelled")
				steps := e.waitTask(t, id, backends.StateCancelled)
				eventually(t, 10*time.Second, func() bool {
					s, err := e.store.GetStep(context.Background(), steps["wait"].ID)
					require.NoError(t, err)
					return s.State == backends.StateCancelled
				}, "step not cancelled")
				require.Zero(t, e.p.Restarts(), "a cancellation is not a crash")
			})
		}
	}
}

const slowWF = `workflow "slow" {
  retry {
    limit = 1
  }
  step "nap" {
    handler = "testp.slow"
    timeout = "300ms"
    config  = { ms = 30000 }
  }
}
`

func TestStepTimeoutInPlugin(t *testing.T) {
	t.Parallel()
	for _, sc := range storetest.Backends() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			e := startEngine(t, sc.Open, slowWF)
			id := e.create(t, "slow", `{}`)
			steps := e.waitTask(t, id, backends.StateError)
			se := stepError(t, steps["nap"])
			require.Equal(t, backends.ErrorKindTimeout, se.Kind)
			require.True(t, se.Retryable)
			// The plugin is still healthy: a timeout is not a crash.
			require.Zero(t, e.p.Restarts())
		})
	}
}
