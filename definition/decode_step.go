package definition

import (
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/taskerd/taskerd/internal/customevent"
)

// MaxStepNameLength bounds a step name, in bytes. Names are stored with
// every step of every task, printed in diagnostics and compared for "did
// you mean" suggestions; 128 is far more than a readable name needs.
const MaxStepNameLength = 128

var stepSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "handler", Required: true},
		{Name: "depends_on"},
		{Name: "config"},
		{Name: "retryable"},
		{Name: "timeout"},
		{Name: "skippable"},
		{Name: "description"},
		{Name: "events"},
		{Name: "result_schema"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "retry"}},
}

// decodeStep reads one step block. Dependencies are only read here; whether
// they exist and form a DAG is checked by resolveGraph once every step of the
// workflow is known. It returns nil when the step cannot be used at all.
func decodeStep(block *hcl.Block, w *Workflow) (*Step, hcl.Diagnostics) {
	s := &Step{
		Name:      block.Labels[0],
		Retry:     w.Retry,
		Retryable: true,
		Timeout:   w.Timeout,
		DeclRange: block.DefRange,
	}
	var diags hcl.Diagnostics
	usable := len(s.Name) <= MaxStepNameLength && validName(s.Name)
	switch {
	case len(s.Name) > MaxStepNameLength:
		diags = append(diags, errAt(block.LabelRanges[0], "Step name too long",
			"This step name is %d bytes long; a step name may be at most %d bytes.", len(s.Name), MaxStepNameLength))
	case !usable:
		diags = append(diags, errAt(block.LabelRanges[0], "Invalid step name",
			"%q is not a valid step name: use letters, digits, _ and -, starting with a letter or _.", s.Name))
	}
	content, more := block.Body.Content(stepSchema)
	diags = append(diags, more...)

	if attr, ok := content.Attributes["handler"]; ok {
		diags = append(diags, s.decodeHandler(attr)...)
	}
	if attr, ok := content.Attributes["depends_on"]; ok {
		diags = append(diags, s.decodeDependsOn(attr)...)
	}
	if attr, ok := content.Attributes["config"]; ok {
		var more hcl.Diagnostics
		s.Config, more = evalJSON(attr)
		diags = append(diags, more...)
	}
	if attr, ok := content.Attributes["retryable"]; ok {
		var more hcl.Diagnostics
		s.Retryable, more = evalBool(attr)
		diags = append(diags, more...)
	}
	if attr, ok := content.Attributes["skippable"]; ok {
		var more hcl.Diagnostics
		s.Skippable, more = evalBool(attr)
		diags = append(diags, more...)
	}
	if attr, ok := content.Attributes["description"]; ok {
		var more hcl.Diagnostics
		s.Description, more = evalString(attr)
		diags = append(diags, more...)
	}
	if attr, ok := content.Attributes["events"]; ok {
		diags = append(diags, s.decodeEvents(attr)...)
	}
	if attr, ok := content.Attributes["result_schema"]; ok {
		raw, sch, more := compileSchemaAttr(attr, `{ type = "object", required = ["payment_id"] }`)
		diags = append(diags, more...)
		s.ResultSchema, s.resultSchema = raw, sch
	}
	if attr, ok := content.Attributes["timeout"]; ok {
		d, more := evalDuration(attr)
		diags = append(diags, more...)
		if !more.HasErrors() {
			s.Timeout = d
		}
	}
	var retrySeen *hcl.Block
	for _, b := range content.Blocks {
		if retrySeen != nil {
			diags = append(diags, errAt(b.DefRange, "Duplicate retry block",
				"A step has at most one retry block. Previous definition was at %s.", at(retrySeen.DefRange)))
			continue
		}
		retrySeen = b
		var more hcl.Diagnostics
		s.Retry, more = decodeRetry(b, w.Retry)
		diags = append(diags, more...)
	}
	if !usable {
		return nil, diags
	}
	return s, diags
}

func (s *Step) decodeHandler(attr *hcl.Attribute) hcl.Diagnostics {
	name, diags := evalString(attr)
	if diags.HasErrors() {
		return diags
	}
	s.HandlerRange = attr.Expr.Range()
	ref, ok := splitHandler(name)
	if !ok {
		return hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid handler",
			"handler = %q: a handler is written builtin.NAME or PLUGIN.HANDLER, each part made of lowercase letters, digits and _ (e.g. \"builtin.noop\", \"payments.charge\").", name)}
	}
	s.Handler = ref
	if s.Handler.IsBuiltin() && !slices.Contains(BuiltinHandlers, s.Handler.Handler) {
		return hcl.Diagnostics{errAt(attr.Expr.Range(), "Unknown built-in handler",
			"There is no built-in handler %q. The built-in handlers are builtin.%s.", name, strings.Join(BuiltinHandlers, ", builtin."))}
	}
	return nil
}

// decodeEvents reads events = ["payment.captured", ...]: the custom event
// names the step's handler may emit (customevent.ValidName: a dot, no
// reserved prefix, letters, digits, _ - and .), each once.
func (s *Step) decodeEvents(attr *hcl.Attribute) hcl.Diagnostics {
	exprs, diags := hcl.ExprList(attr.Expr)
	if diags.HasErrors() {
		return hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid events",
			"events must be a list of event names, e.g. events = [\"payment.captured\"].")}
	}
	seen := map[string]hcl.Range{}
	for _, expr := range exprs {
		v, more := expr.Value(nil)
		if more.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
			diags = append(diags, errAt(expr.Range(), "Invalid event name",
				"An event name is a string, e.g. events = [\"payment.captured\"]."))
			continue
		}
		name := v.AsString()
		if !customevent.ValidName(name) {
			diags = append(diags, errAt(expr.Range(), "Invalid event name",
				"%q is not a valid custom event name: %s.", name, customevent.NameRule(name)))
			continue
		}
		if prev, dup := seen[name]; dup {
			diags = append(diags, errAt(expr.Range(), "Duplicate event",
				"Step %q already declares event %q at %s.", s.Name, name, at(prev)))
			continue
		}
		seen[name] = expr.Range()
		s.Events = append(s.Events, name)
	}
	return diags
}

// decodeDependsOn reads depends_on = [step.a, step.b] as traversals, never
// evaluating them, and keeps each one's range for later diagnostics.
func (s *Step) decodeDependsOn(attr *hcl.Attribute) hcl.Diagnostics {
	exprs, diags := hcl.ExprList(attr.Expr)
	if diags.HasErrors() {
		return hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid depends_on",
			"depends_on must be a list of step references, e.g. depends_on = [step.validate, step.charge].")}
	}
	seen := map[string]hcl.Range{}
	for _, expr := range exprs {
		name, ok := stepReference(expr)
		if !ok {
			diags = append(diags, errAt(expr.Range(), "Invalid dependency reference",
				"A dependency is written step.NAME (a reference, not a string), e.g. depends_on = [step.validate]."))
			continue
		}
		if prev, dup := seen[name]; dup {
			diags = append(diags, errAt(expr.Range(), "Duplicate dependency",
				"Step %q already depends on step.%s at %s.", s.Name, name, at(prev)))
			continue
		}
		seen[name] = expr.Range()
		s.DependsOn = append(s.DependsOn, name)
		s.DependsOnRanges = append(s.DependsOnRanges, expr.Range())
	}
	return diags
}

// stepReference reads the NAME of a step.NAME traversal.
func stepReference(expr hcl.Expression) (string, bool) {
	trav, diags := hcl.AbsTraversalForExpr(expr)
	if diags.HasErrors() || len(trav) != 2 || trav.RootName() != "step" {
		return "", false
	}
	attr, ok := trav[1].(hcl.TraverseAttr)
	if !ok {
		return "", false
	}
	return attr.Name, true
}
