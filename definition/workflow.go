package definition

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// Defaults from docs/concepts.md. They apply when neither the step nor its
// workflow says otherwise.
const (
	DefaultNamespace  = "default"
	DefaultRetryLimit = 3
	DefaultRetryBase  = time.Second
	DefaultRetryMax   = 30 * time.Second
	// DefaultTimeout bounds one execution of a step whose workflow and step
	// name no timeout. A handler that hangs forever would otherwise hold its
	// step (and its lease) forever.
	DefaultTimeout = 5 * time.Minute

	// MinRetryBase and MaxRetryMax bound a retry block. With them,
	// base * 2^n reaches max before n = 40, so stores can compute backoff(n)
	// with a bounded shift in SQL and agree exactly with the Go reference.
	MinRetryBase = time.Millisecond
	MaxRetryMax  = 24 * time.Hour
)

// DefaultVersion is the version of a workflow that names none.
var DefaultVersion = Version{Major: 0, Minor: 1, Patch: 0}

// BuiltinHandlers are the handlers taskerd ships, reached as builtin.NAME.
// A workflow naming any other builtin.* handler is invalid.
var BuiltinHandlers = []string{"echo", "fail", "noop", "sleep"}

// BuiltinPlugin is the plugin part of a built-in handler reference.
const BuiltinPlugin = "builtin"

// Workflow is a validated workflow definition: a named, versioned DAG of steps.
type Workflow struct {
	Namespace   string
	Name        string
	Version     Version
	Description string

	// ContextSchema is the workflow's JSON Schema for task contexts, as JSON,
	// or nil when the workflow has none.
	ContextSchema json.RawMessage
	schema        *jsonschema.Schema

	// Retry and Timeout are the workflow-level defaults; every Step carries
	// its own effective values already merged with these.
	Retry   RetryPolicy
	Timeout time.Duration

	// Concurrency caps the steps of this workflow's tasks that run at once,
	// cluster-wide (0: no limit). The cap of a namespace/name is that of its
	// highest loaded version (Catalog.ConcurrencyLimits).
	Concurrency int

	// Steps are in declaration order.
	Steps []*Step

	// DeclRange is where the workflow block starts (for "previous definition
	// was at" messages); Filename is the file it came from.
	DeclRange hcl.Range

	byName map[string]*Step
	order  []*Step   // topological order: by level, then declaration order
	levels [][]*Step // levels[i] holds the steps of level i, in declaration order
	child  [][]*Step // children of Steps[i], in declaration order
}

// Step is one node of a workflow's DAG, with its effective settings.
type Step struct {
	Name        string
	Description string
	Handler     HandlerRef
	// DependsOn names the step's parents, in the order written.
	DependsOn []string
	// Config is the step's config as JSON, or nil when it has none.
	Config    json.RawMessage
	Retry     RetryPolicy
	Retryable bool
	Timeout   time.Duration
	Skippable bool
	// Events are the custom event names the step's handler may emit
	// (events = [...]), in the order written; nil when it declares none. An
	// attempt that emits any other fails (kind undeclared_event).
	Events []string
	// ResultSchema is the JSON Schema the step's results must conform to
	// (result_schema = {...}), as JSON, or nil when the step declares none.
	// The engine fails an attempt whose result does not (ValidateResult).
	ResultSchema json.RawMessage
	resultSchema *jsonschema.Schema
	// Level is the longest path from a root to this step; roots are 0.
	Level int
	// Index is the step's position in Workflow.Steps.
	Index int

	DeclRange    hcl.Range
	HandlerRange hcl.Range
	// DependsOnRanges[i] is where DependsOn[i] is written.
	DependsOnRanges []hcl.Range
}

// RetryPolicy bounds how often a step runs and how long it waits between
// failures: backoff(n) = min(Base * 2^n, Max).
type RetryPolicy struct {
	// Limit is the total number of executions allowed, retries included.
	Limit int
	Base  time.Duration
	Max   time.Duration
}

// Backoff is the wait after a step's n-th failed attempt: min(Base*2^n, Max).
func (r RetryPolicy) Backoff(n int) time.Duration {
	d := r.Base
	for i := 0; i < n; i++ {
		if d >= r.Max || d > r.Max/2 {
			return r.Max
		}
		d *= 2
	}
	return min(d, r.Max)
}

// HandlerRef names the code that runs a step: builtin.NAME or PLUGIN.HANDLER.
type HandlerRef struct {
	Plugin  string
	Handler string
}

// IsBuiltin reports whether the handler is one taskerd ships.
func (h HandlerRef) IsBuiltin() bool { return h.Plugin == BuiltinPlugin }

func (h HandlerRef) String() string { return h.Plugin + "." + h.Handler }

// ID is the workflow's identity, namespace/name@version.
func (w *Workflow) ID() string {
	return fmt.Sprintf("%s/%s@%s", w.Namespace, w.Name, w.Version)
}

// FullName is namespace/name, without the version.
func (w *Workflow) FullName() string { return w.Namespace + "/" + w.Name }

// Filename is the file the workflow was read from.
func (w *Workflow) Filename() string { return w.DeclRange.Filename }

// Step returns the step with the given name, or nil.
func (w *Workflow) Step(name string) *Step { return w.byName[name] }

// Order returns the steps in a deterministic topological order: by dependency
// level, and within a level in declaration order. Every parent comes before
// its children.
func (w *Workflow) Order() []*Step { return w.order }

// Levels returns the steps grouped by dependency level: Levels()[0] are the
// roots. Within a level, steps are in declaration order.
func (w *Workflow) Levels() [][]*Step { return w.levels }

// Children returns the steps that depend on s, in declaration order.
func (w *Workflow) Children(s *Step) []*Step { return w.child[s.Index] }

// Edges returns every parent → child edge, ordered by the child's position in
// Order() and then by the order its depends_on lists its parents.
func (w *Workflow) Edges() []Edge {
	var edges []Edge
	for _, s := range w.order {
		for _, p := range s.DependsOn {
			edges = append(edges, Edge{From: p, To: s.Name})
		}
	}
	return edges
}

// Edge is a dependency: From provides for To (To runs after From).
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// ValidateContext checks a task context (a value decoded from JSON, e.g. with
// jsonschema.UnmarshalJSON or encoding/json into any) against the workflow's
// context_schema. It returns nil when the workflow has no schema or the
// context conforms, and otherwise a *jsonschema.ValidationError whose
// BasicOutput lists each violation with its JSON pointer.
func (w *Workflow) ValidateContext(context any) error {
	if w.schema == nil {
		return nil
	}
	return w.schema.Validate(context)
}

// Violation is one way a value fails a schema: where (a JSON pointer into
// the value, "" for the whole value) and what.
type Violation struct {
	Pointer string `json:"pointer"`
	Message string `json:"message"`
}

// Violations flattens a validation error of ValidateContext or
// ValidateResult to its leaves: the units of its basic output that say
// something concrete (not "validation failed"), each once, in order; the
// error's own message when there is none.
func Violations(ve *jsonschema.ValidationError) []Violation {
	var out []Violation
	seen := map[Violation]bool{}
	for _, u := range ve.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		switch u.Error.Kind.(type) {
		case *kind.Group, *kind.Schema, *kind.Reference:
			continue
		}
		v := Violation{Pointer: u.InstanceLocation, Message: u.Error.String()}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		out = append(out, Violation{Pointer: "", Message: ve.Error()})
	}
	return out
}

// ValidateResult checks a step's result (a value decoded from JSON, e.g.
// with jsonschema.UnmarshalJSON) against the step's result_schema. It
// returns nil when the step has no schema or the result conforms, and
// otherwise a *jsonschema.ValidationError whose BasicOutput lists each
// violation with its JSON pointer.
func (s *Step) ValidateResult(result any) error {
	if s.resultSchema == nil {
		return nil
	}
	return s.resultSchema.Validate(result)
}

// Ref identifies a workflow in a request: namespace/name, optionally @version.
type Ref struct {
	Namespace string
	Name      string
	// Version is nil when the reference names no version: the highest wins.
	Version *Version
}

// ParseRef reads "namespace/name", "namespace/name@1.2.0", or "name" (in the
// default namespace).
func ParseRef(s string) (Ref, error) {
	var ref Ref
	rest := s
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		v, err := ParseVersion(rest[i+1:])
		if err != nil {
			return Ref{}, fmt.Errorf("workflow reference %q: %w", s, err)
		}
		ref.Version = &v
		rest = rest[:i]
	}
	ns, name, found := strings.Cut(rest, "/")
	if !found {
		ns, name = DefaultNamespace, rest
	}
	if !validName(ns) || !validName(name) {
		return Ref{}, fmt.Errorf("workflow reference %q: want NAMESPACE/NAME or NAMESPACE/NAME@VERSION", s)
	}
	ref.Namespace, ref.Name = ns, name
	return ref, nil
}

func (r Ref) String() string {
	if r.Version == nil {
		return r.Namespace + "/" + r.Name
	}
	return fmt.Sprintf("%s/%s@%s", r.Namespace, r.Name, r.Version)
}
