package definition

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "workflow", LabelNames: []string{"name"}},
		{Type: "schedule", LabelNames: []string{"name"}},
	},
}

var workflowSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "namespace"},
		{Name: "version"},
		{Name: "description"},
		{Name: "context_schema"},
		{Name: "timeout"},
		{Name: "concurrency"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "retry"},
		{Type: "step", LabelNames: []string{"name"}},
	},
}

// decodeFile reads a file's workflows, and returns its schedule blocks
// undecoded: a schedule is checked against the workflows of every file.
func decodeFile(file *hcl.File) ([]*Workflow, []*hcl.Block, hcl.Diagnostics) {
	content, diags := file.Body.Content(fileSchema)
	var (
		workflows []*Workflow
		schedules []*hcl.Block
	)
	for _, block := range content.Blocks {
		if block.Type == "schedule" {
			schedules = append(schedules, block)
			continue
		}
		w, more := decodeWorkflow(block)
		diags = append(diags, more...)
		if w != nil {
			workflows = append(workflows, w)
		}
	}
	return workflows, schedules, diags
}

// decodeWorkflow reads and validates one workflow block. It reports every
// problem it finds and returns nil if there was any.
func decodeWorkflow(block *hcl.Block) (*Workflow, hcl.Diagnostics) {
	w := &Workflow{
		Name:      block.Labels[0],
		Namespace: DefaultNamespace,
		Version:   DefaultVersion,
		Retry:     RetryPolicy{Limit: DefaultRetryLimit, Base: DefaultRetryBase, Max: DefaultRetryMax},
		Timeout:   DefaultTimeout,
		DeclRange: block.DefRange,
		byName:    map[string]*Step{},
	}
	var diags hcl.Diagnostics
	if !validName(w.Name) {
		diags = append(diags, errAt(block.LabelRanges[0], "Invalid workflow name",
			"%q is not a valid workflow name: use letters, digits, _ and -, starting with a letter or _.", w.Name))
	}
	content, more := block.Body.Content(workflowSchema)
	diags = append(diags, more...)

	if attr, ok := content.Attributes["namespace"]; ok {
		ns, more := evalString(attr)
		diags = append(diags, more...)
		if !more.HasErrors() {
			if validName(ns) {
				w.Namespace = ns
			} else {
				diags = append(diags, errAt(attr.Expr.Range(), "Invalid namespace",
					"%q is not a valid namespace: use letters, digits, _ and -, starting with a letter or _.", ns))
			}
		}
	}
	if attr, ok := content.Attributes["version"]; ok {
		s, more := evalString(attr)
		diags = append(diags, more...)
		if !more.HasErrors() {
			v, err := ParseVersion(s)
			if err != nil {
				diags = append(diags, errAt(attr.Expr.Range(), "Invalid version", "%s.", err))
			} else {
				w.Version = v
			}
		}
	}
	if attr, ok := content.Attributes["description"]; ok {
		s, more := evalString(attr)
		diags = append(diags, more...)
		w.Description = s
	}
	if attr, ok := content.Attributes["timeout"]; ok {
		d, more := evalDuration(attr)
		diags = append(diags, more...)
		if !more.HasErrors() {
			w.Timeout = d
		}
	}
	if attr, ok := content.Attributes["context_schema"]; ok {
		diags = append(diags, w.decodeContextSchema(attr)...)
	}
	if attr, ok := content.Attributes["concurrency"]; ok {
		n, more := evalInt(attr)
		diags = append(diags, more...)
		if !more.HasErrors() {
			if n < 1 {
				diags = append(diags, errAt(attr.Expr.Range(), "Invalid concurrency",
					"concurrency is the most steps of this workflow's tasks that may run at once across the cluster, so it must be at least 1, not %d. Leave it out for no limit.", n))
			} else {
				w.Concurrency = n
			}
		}
	}

	var retrySeen *hcl.Block
	var stepBlocks []*hcl.Block
	for _, b := range content.Blocks {
		switch b.Type {
		case "retry":
			if retrySeen != nil {
				diags = append(diags, errAt(b.DefRange, "Duplicate retry block",
					"A workflow has at most one retry block. Previous definition was at %s.", at(retrySeen.DefRange)))
				continue
			}
			retrySeen = b
			var more hcl.Diagnostics
			w.Retry, more = decodeRetry(b, w.Retry)
			diags = append(diags, more...)
		case "step":
			stepBlocks = append(stepBlocks, b)
		}
	}

	// Steps inherit the workflow's retry and timeout, so they are read after
	// the workflow's own attributes whatever the order in the file.
	for _, b := range stepBlocks {
		s, more := decodeStep(b, w)
		diags = append(diags, more...)
		if s == nil {
			continue
		}
		if prev, ok := w.byName[s.Name]; ok {
			diags = append(diags, errAt(b.LabelRanges[0], "Duplicate step",
				"Workflow %q already has a step %q. Previous definition was at %s.", w.Name, s.Name, at(prev.DeclRange)))
			continue
		}
		s.Index = len(w.Steps)
		w.Steps = append(w.Steps, s)
		w.byName[s.Name] = s
	}
	if len(stepBlocks) == 0 {
		diags = append(diags, errAt(block.DefRange, "Workflow without steps",
			"Workflow %q has no step blocks; a workflow needs at least one step.", w.Name))
	}

	diags = append(diags, w.resolveGraph()...)
	if diags.HasErrors() {
		return nil, diags
	}
	return w, diags
}

// decodeContextSchema compiles the workflow's context_schema so that an
// invalid schema is caught when the file is read, not when the first task is
// created.
func (w *Workflow) decodeContextSchema(attr *hcl.Attribute) hcl.Diagnostics {
	raw, sch, diags := compileSchemaAttr(attr, `{ type = "object", required = ["order_id"] }`)
	if sch != nil {
		w.ContextSchema, w.schema = raw, sch
	}
	return diags
}

// compileSchemaAttr compiles an attribute holding a JSON Schema (draft
// 2020-12 unless it says otherwise), an HCL object; example is one for the
// message when it is not an object. It returns nil and no diagnostics for
// a null value.
func compileSchemaAttr(attr *hcl.Attribute, example string) (json.RawMessage, *jsonschema.Schema, hcl.Diagnostics) {
	raw, diags := evalJSON(attr)
	if diags.HasErrors() || raw == nil {
		return nil, nil, diags
	}
	summary := "Invalid " + attr.Name
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, hcl.Diagnostics{errAt(attr.Expr.Range(), summary, "%s.", err)}
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, nil, hcl.Diagnostics{errAt(attr.Expr.Range(), summary,
			"%s must be an object, e.g. %s.", attr.Name, example)}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// A workflow file is self-contained: a $ref to another document is not
	// fetched from disk or the network.
	c.UseLoader(refuseLoader{attr: attr.Name})
	url := "taskerd:///" + attr.Name + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, nil, hcl.Diagnostics{errAt(attr.Expr.Range(), summary, "%s.", err)}
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, nil, hcl.Diagnostics{errAt(attr.Expr.Range(), summary, "%s", schemaError(err))}
	}
	return raw, sch, nil
}

// refuseLoader refuses every document but the schema being compiled.
type refuseLoader struct{ attr string }

func (l refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s may only refer to itself; %s is not loaded", l.attr, url)
}

// schemaError makes the compiler's message readable without the internal URL.
func schemaError(err error) string {
	if ve, ok := err.(*jsonschema.SchemaValidationError); ok {
		if inner, ok := ve.Err.(*jsonschema.ValidationError); ok {
			var out bytes.Buffer
			out.WriteString("The schema does not conform to JSON Schema (draft 2020-12):")
			for _, u := range inner.BasicOutput().Errors {
				if u.Error == nil {
					continue
				}
				loc := u.InstanceLocation
				if loc == "" {
					loc = "/"
				}
				fmt.Fprintf(&out, "\n  at %s: %s", loc, u.Error.String())
			}
			return out.String()
		}
	}
	return err.Error() + "."
}
