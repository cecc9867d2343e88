package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/taskerd/taskerd/definition"
)

// A workflow is unavailable on a node when some of its steps name handlers
// that the node's Registry does not hold: a plugin that is not configured,
// or that has no such handler. `taskerd serve` loads such a workflow anyway
// (and reports it) rather than refusing to start; the engine then refuses
// to create tasks for it, and a step of an existing task whose handler is
// missing blocks at once with kind backends.ErrorKindHandlerMissing.

// MissingHandlers returns the handlers (PLUGIN.HANDLER) that steps of wf
// name and the registry does not hold, sorted and without repeats; none
// when wf is available.
func (e *Engine) MissingHandlers(wf *definition.Workflow) []string {
	return MissingHandlers(wf, e.registry)
}

// MissingHandlers is Engine.MissingHandlers for any registry.
func MissingHandlers(wf *definition.Workflow, r *Registry) []string {
	var missing []string
	for _, s := range wf.Steps {
		name := s.Handler.String()
		if _, ok := r.Lookup(name); !ok && !slices.Contains(missing, name) {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	return missing
}

// UnavailableError is CreateTask's refusal of a workflow whose handlers are
// not all registered on this node.
type UnavailableError struct {
	Workflow string // its id, namespace/name@version
	// Missing are the handlers no plugin provides, PLUGIN.HANDLER, sorted.
	Missing []string
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("workflow %s is unavailable: %s", e.Workflow, UnavailableReason(e.Missing))
}

// UnavailableReason says why a workflow with these missing handlers cannot
// run, and what to configure: "handler orders.charge is not registered
// (configure plugin "orders" in taskerd.hcl)".
func UnavailableReason(missing []string) string {
	var plugins []string
	for _, h := range missing {
		p, _, _ := strings.Cut(h, ".")
		if !slices.Contains(plugins, p) {
			plugins = append(plugins, p)
		}
	}
	noun, verb := "handler", "is"
	if len(missing) > 1 {
		noun, verb = "handlers", "are"
	}
	quoted := make([]string, len(plugins))
	for i, p := range plugins {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	what := "plugin " + strings.Join(quoted, ", ")
	if len(plugins) > 1 {
		what = "plugins " + strings.Join(quoted, ", ")
	}
	return fmt.Sprintf("%s %s %s not registered (configure %s in taskerd.hcl, with the handlers, and restart)",
		noun, strings.Join(missing, ", "), verb, what)
}
