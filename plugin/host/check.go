package host

import (
	"errors"
	"fmt"
	"strings"

	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
)

// CheckWorkflows checks that every step of every workflow in cat names a
// handler registered in r (builtins and plugin handlers). Each unknown one
// is an error naming the workflow file:line:column and the handlers that
// are available; taskerd refuses to start on any.
func CheckWorkflows(cat *definition.Catalog, r *engine.Registry) error {
	var errs []error
	for _, wf := range cat.All() {
		for _, s := range wf.Order() {
			if _, ok := r.Lookup(s.Handler.String()); ok {
				continue
			}
			errs = append(errs, UnknownHandlerError(wf, s, r.Names()))
		}
	}
	return errors.Join(errs...)
}

// UnknownHandlerError is the error for a step whose handler is not among
// names (PLUGIN.HANDLER, as registered).
func UnknownHandlerError(wf *definition.Workflow, s *definition.Step, names []string) error {
	rng := s.HandlerRange
	where := fmt.Sprintf("%s:%d:%d", rng.Filename, rng.Start.Line, rng.Start.Column)
	var same []string
	for _, n := range names {
		if p, _, _ := strings.Cut(n, "."); p == s.Handler.Plugin {
			same = append(same, n)
		}
	}
	if len(same) > 0 {
		return fmt.Errorf("%s: step %q of %s uses handler %s, but plugin %q has no handler %q (available: %s)",
			where, s.Name, wf.ID(), s.Handler, s.Handler.Plugin, s.Handler.Handler, strings.Join(same, ", "))
	}
	return fmt.Errorf("%s: step %q of %s uses handler %s, but no plugin %q is loaded (available: %s)",
		where, s.Name, wf.ID(), s.Handler, s.Handler.Plugin, strings.Join(names, ", "))
}
