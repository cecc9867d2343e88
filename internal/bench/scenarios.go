package bench

import (
	"fmt"
	"strings"
)

// The handlers the scenarios' workflows name: bench.noop and bench.flaky
// run in this process; PluginName.noop is the no-op plugin of plugin-1.
const (
	noopHandler  = "bench.noop"
	flakyHandler = "bench.flaky"
	// PluginName is the name plugin-1 gives the plugin of Options.Plugin,
	// whose handler "noop" must return at once.
	PluginName = "bench_plugin"
)

// How each scenario's tasks are created.
const (
	createdBefore = "before" // all of them before the engine starts
	createdLive   = "live"   // by 4 clients while the engine runs
	createdAPI    = "api"    // by POST /v1/tasks at the offered rate
	// one at a time while the engine runs, each once the previous one
	// finished: fanout-50's spread is then the fan-out's own, not a wait
	// behind the branches of other tasks
	createdSerial = "serial"
)

// scenario is one workload.
type scenario struct {
	name  string
	about string
	// steps are the workflow's steps in order: a step depends on the steps
	// of parents (names).
	steps []stepDef
	// handler is the handler every step names.
	handler string
	// retry is the workflow's retry block, or "".
	retry        string
	created      string
	defaultTasks int
}

type stepDef struct {
	name    string
	parents []string
}

// DefaultTasks is --tasks for the 1-step scenarios; the others default to
// about as many steps (see Scenarios).
const DefaultTasks = 2000

// DefaultWorkers is --workers.
const DefaultWorkers = 16

// DefaultRate is api-create's offered rate, in requests per second.
const DefaultRate = 500

// clients is how many goroutines create tasks at once (noop-1-live, and
// every scenario under --duration): API callers are several, and one
// client alone measures its own round trips, not the engine.
const clients = 4

var scenarios = []*scenario{
	{name: "noop-1", about: "1-step tasks, all created before the run", steps: chain(1), handler: noopHandler,
		created: createdBefore, defaultTasks: DefaultTasks},
	{name: "noop-1-live", about: "1-step tasks created while the run goes by 4 clients", steps: chain(1), handler: noopHandler,
		created: createdLive, defaultTasks: DefaultTasks},
	{name: "linear-10", about: "10-step chains, created before the run", steps: chain(10), handler: noopHandler,
		created: createdBefore, defaultTasks: 300},
	{name: "fanout-50", about: "root, then 48 parallel steps, then a merge; one task at a time, each created when the previous one is complete", steps: fanout(48), handler: noopHandler,
		created: createdSerial, defaultTasks: 100},
	{name: "plugin-1", about: "1-step tasks whose handler is a real step-handler plugin process; created before the run", steps: chain(1),
		handler: PluginName + ".noop", created: createdBefore, defaultTasks: DefaultTasks},
	{name: "retry", about: "1-step tasks whose step fails once, then succeeds after a 10 ms backoff; created before the run", steps: chain(1),
		handler: flakyHandler, retry: "limit = 2\n    base  = \"10ms\"\n    max   = \"10ms\"", created: createdBefore, defaultTasks: DefaultTasks},
	{name: "api-create", about: "1-step tasks created by POST /v1/tasks over HTTP at --rate per second", steps: chain(1), handler: noopHandler,
		created: createdAPI, defaultTasks: DefaultTasks},
}

// Scenarios are the scenario names, in the order of the help text.
func Scenarios() []string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.name
	}
	return names
}

// About is a one-line description of scenario name, with its default
// --tasks; "" for an unknown name.
func About(name string) string {
	if s := lookup(name); s != nil {
		return fmt.Sprintf("%s (default --tasks %d)", s.about, s.defaultTasks)
	}
	return ""
}

func lookup(name string) *scenario {
	for _, s := range scenarios {
		if s.name == name {
			return s
		}
	}
	return nil
}

func chain(n int) []stepDef {
	steps := make([]stepDef, n)
	for i := range steps {
		steps[i].name = fmt.Sprintf("s%d", i)
		if i > 0 {
			steps[i].parents = []string{steps[i-1].name}
		}
	}
	return steps
}

// fanout is root, then branches parallel steps depending on it, then merge
// depending on every branch.
func fanout(branches int) []stepDef {
	steps := []stepDef{{name: "root"}}
	var names []string
	for i := range branches {
		name := fmt.Sprintf("b%02d", i)
		names = append(names, name)
		steps = append(steps, stepDef{name: name, parents: []string{"root"}})
	}
	return append(steps, stepDef{name: "merge", parents: names})
}

// workflowName is the scenario's workflow, namespace "bench".
func (s *scenario) workflowName() string { return "bench/" + s.name }

// hcl is the scenario's workflow source.
func (s *scenario) hcl() string {
	var b strings.Builder
	fmt.Fprintf(&b, "workflow %q {\n  namespace = \"bench\"\n", s.name)
	if s.retry != "" {
		fmt.Fprintf(&b, "  retry {\n    %s\n  }\n", s.retry)
	}
	for _, st := range s.steps {
		fmt.Fprintf(&b, "  step %q {\n    handler = %q\n", st.name, s.handler)
		if len(st.parents) > 0 {
			refs := make([]string, len(st.parents))
			for i, p := range st.parents {
				refs[i] = "step." + p
			}
			fmt.Fprintf(&b, "    depends_on = [%s]\n", strings.Join(refs, ", "))
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}\n")
	return b.String()
}
