package definition

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

const fullExample = `
workflow "order_fulfillment" {
  namespace   = "ecommerce"
  version     = "1.2.0"
  description = "Validate, charge, ship"

  context_schema = {
    type     = "object"
    required = ["order_id"]
    properties = {
      order_id = { type = "string" }
    }
  }

  retry {
    limit = 4
    base  = "2s"
    max   = "1m"
  }
  timeout = "30s"

  step "validate" {
    handler = "builtin.noop"
  }
  step "charge" {
    handler     = "payments.charge"
    description = "Charge the card"
    depends_on  = [step.validate]
    config      = { currency = "EUR", amounts = [1, 2.5], nested = { ok = true } }
    retry { limit = 5 }
    retryable = true
    timeout   = "10s"
  }
  step "ship" {
    handler    = "shipping.create_label"
    depends_on = [step.charge]
    skippable  = true
    retryable  = false
    retry {
      max = "5s"
      base = "100ms"
    }
  }
}
`

func TestParseFullExample(t *testing.T) {
	t.Parallel()
	ws, diags := parse(t, fullExample)
	require.Empty(t, diags)
	require.Len(t, ws, 1)
	w := ws[0]

	require.Equal(t, "ecommerce", w.Namespace)
	require.Equal(t, "order_fulfillment", w.Name)
	require.Equal(t, Version{1, 2, 0}, w.Version)
	require.Equal(t, "ecommerce/order_fulfillment@1.2.0", w.ID())
	require.Equal(t, "Validate, charge, ship", w.Description)
	require.Equal(t, RetryPolicy{Limit: 4, Base: 2 * time.Second, Max: time.Minute}, w.Retry)
	require.Equal(t, 30*time.Second, w.Timeout)
	require.JSONEq(t, `{"type":"object","required":["order_id"],"properties":{"order_id":{"type":"string"}}}`, string(w.ContextSchema))
	require.Equal(t, "test.hcl", w.Filename())
	require.Equal(t, 2, w.DeclRange.Start.Line)

	validate := w.Step("validate")
	require.NotNil(t, validate)
	require.Equal(t, HandlerRef{Plugin: "builtin", Handler: "noop"}, validate.Handler)
	require.True(t, validate.Handler.IsBuiltin())
	require.Empty(t, validate.DependsOn)
	require.Nil(t, validate.Config)
	require.Equal(t, w.Retry, validate.Retry, "a step without retry inherits the workflow's")
	require.True(t, validate.Retryable, "retryable defaults to true")
	require.False(t, validate.Skippable)
	require.Equal(t, 30*time.Second, validate.Timeout, "a step without timeout inherits the workflow's")

	charge := w.Step("charge")
	require.Equal(t, "payments.charge", charge.Handler.String())
	require.False(t, charge.Handler.IsBuiltin())
	require.Equal(t, "Charge the card", charge.Description)
	require.Equal(t, []string{"validate"}, charge.DependsOn)
	require.Equal(t, 28, charge.DependsOnRanges[0].Start.Line)
	require.JSONEq(t, `{"currency":"EUR","amounts":[1,2.5],"nested":{"ok":true}}`, string(charge.Config))
	require.Equal(t, RetryPolicy{Limit: 5, Base: 2 * time.Second, Max: time.Minute}, charge.Retry,
		"retry { limit = 5 } keeps the workflow's base and max")
	require.Equal(t, 10*time.Second, charge.Timeout)

	ship := w.Step("ship")
	require.True(t, ship.Skippable)
	require.False(t, ship.Retryable)
	require.Equal(t, RetryPolicy{Limit: 4, Base: 100 * time.Millisecond, Max: 5 * time.Second}, ship.Retry)

	require.Nil(t, w.Step("missing"))
	require.Equal(t, []*Step{charge}, w.Children(validate))
	require.Empty(t, w.Children(ship))
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	ws, diags := parse(t, `workflow "w" {
  step "a" { handler = "builtin.noop" }
}`)
	require.Empty(t, diags)
	w := ws[0]
	require.Equal(t, "default", w.Namespace)
	require.Equal(t, Version{0, 1, 0}, w.Version)
	require.Equal(t, "default/w@0.1.0", w.ID())
	require.Equal(t, RetryPolicy{Limit: 3, Base: time.Second, Max: 30 * time.Second}, w.Retry)
	require.Equal(t, DefaultTimeout, w.Timeout)
	require.Nil(t, w.ContextSchema)
	require.NoError(t, w.ValidateContext(map[string]any{"anything": 1}), "no schema accepts any context")
	a := w.Step("a")
	require.Equal(t, w.Retry, a.Retry)
	require.True(t, a.Retryable)
	require.Equal(t, DefaultTimeout, a.Timeout)
}

func TestStepsMayComeBeforeTheWorkflowRetry(t *testing.T) {
	t.Parallel()
	// Steps inherit the workflow's retry whatever the order in the file.
	ws, diags := parse(t, `workflow "w" {
  step "a" { handler = "builtin.noop" }
  retry { limit = 7 }
}`)
	require.Empty(t, diags)
	require.Equal(t, 7, ws[0].Step("a").Retry.Limit)
}

func TestValidateContext(t *testing.T) {
	t.Parallel()
	ws, diags := parse(t, fullExample)
	require.Empty(t, diags)
	w := ws[0]

	require.NoError(t, w.ValidateContext(map[string]any{"order_id": "A-1"}))

	err := w.ValidateContext(map[string]any{"order_id": 42})
	var ve *jsonschema.ValidationError
	require.True(t, errors.As(err, &ve), "got %v", err)
	var locations []string
	for _, u := range ve.BasicOutput().Errors {
		if u.Error != nil {
			locations = append(locations, u.InstanceLocation)
		}
	}
	require.Contains(t, locations, "/order_id")

	require.Error(t, w.ValidateContext(map[string]any{}), "order_id is required")
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	r := RetryPolicy{Limit: 10, Base: time.Second, Max: 30 * time.Second}
	// backoff(n) = min(base * 2^n, max): 2s, 4s, 8s, 16s, 30s... (SEMANTICS §3)
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for n, w := range want {
		require.Equal(t, w*time.Second, r.Backoff(n), "backoff(%d)", n)
	}
	require.Equal(t, 30*time.Second, r.Backoff(1000), "a huge n must not overflow")
	small := RetryPolicy{Base: 100 * time.Millisecond, Max: 250 * time.Millisecond}
	require.Equal(t, 200*time.Millisecond, small.Backoff(1))
	require.Equal(t, 250*time.Millisecond, small.Backoff(2))
}

func TestVersion(t *testing.T) {
	t.Parallel()
	v, err := ParseVersion("10.0.3")
	require.NoError(t, err)
	require.Equal(t, Version{10, 0, 3}, v)
	require.Equal(t, "10.0.3", v.String())
	for _, bad := range []string{"", "1", "1.2", "1.2.3.4", "v1.2.3", "1.2.x", "01.2.3", "1.2.3-rc.1", "1..3", "-1.2.3", "99999999999999999999.0.0"} {
		_, err := ParseVersion(bad)
		require.Error(t, err, "ParseVersion(%q)", bad)
	}
	require.Equal(t, -1, Version{1, 9, 9}.Compare(Version{1, 10, 0}))
	require.Equal(t, 1, Version{2, 0, 0}.Compare(Version{1, 99, 99}))
	require.Equal(t, 0, Version{1, 2, 3}.Compare(Version{1, 2, 3}))
	require.Equal(t, -1, Version{1, 2, 3}.Compare(Version{1, 2, 4}))
}

func TestParseRef(t *testing.T) {
	t.Parallel()
	r, err := ParseRef("ecommerce/order_fulfillment@1.2.0")
	require.NoError(t, err)
	require.Equal(t, "ecommerce", r.Namespace)
	require.Equal(t, "order_fulfillment", r.Name)
	require.Equal(t, &Version{1, 2, 0}, r.Version)
	require.Equal(t, "ecommerce/order_fulfillment@1.2.0", r.String())

	r, err = ParseRef("ecommerce/order_fulfillment")
	require.NoError(t, err)
	require.Nil(t, r.Version)
	require.Equal(t, "ecommerce/order_fulfillment", r.String())

	r, err = ParseRef("diamond")
	require.NoError(t, err)
	require.Equal(t, "default/diamond", r.String())

	for _, bad := range []string{"", "a/b/c", "a/b@1", "/b", "a/", "a b/c", "a/b@"} {
		_, err := ParseRef(bad)
		require.Error(t, err, "ParseRef(%q)", bad)
	}
}

func writeFile(t *testing.T, dir, name, src string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(src), 0o644))
	return path
}

func TestLoadDirectoryAndFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "a.hcl", `workflow "one" {
  version = "1.0.0"
  step "s" { handler = "builtin.noop" }
}
workflow "one" {
  version = "1.1.0"
  step "s" { handler = "builtin.noop" }
}`)
	writeFile(t, dir, "b.hcl", `workflow "two" {
  namespace = "ops"
  step "s" { handler = "builtin.noop" }
}`)
	writeFile(t, dir, "notes.txt", "not a workflow")

	ws, _, diags := Load(dir)
	require.Empty(t, diags)
	var ids []string
	for _, w := range ws {
		ids = append(ids, w.ID())
	}
	require.Equal(t, []string{"default/one@1.0.0", "default/one@1.1.0", "ops/two@0.1.0"}, ids)

	ws, _, diags = Load(filepath.Join(dir, "b.hcl"), filepath.Join(dir, "b.hcl"))
	require.Empty(t, diags, "a file named twice is read once")
	require.Len(t, ws, 1)
}

func TestLoadDuplicateAcrossFilesNamesBothPlaces(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := writeFile(t, dir, "a.hcl", `workflow "w" {
  step "s" { handler = "builtin.noop" }
}`)
	second := writeFile(t, dir, "b.hcl", `

workflow "w" {
  step "s" { handler = "builtin.echo" }
}`)
	ws, _, diags := Load(dir)
	require.Len(t, ws, 1)
	require.Len(t, diags, 1)
	d := diags[0]
	require.Equal(t, "Duplicate workflow", d.Summary)
	require.Equal(t, second, d.Subject.Filename)
	require.Equal(t, 3, d.Subject.Start.Line)
	require.Contains(t, d.Detail, "Previous definition was at "+first+":1:1")
}

func TestLoadPathProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, _, diags := Load(filepath.Join(dir, "missing.hcl"))
	require.True(t, diags.HasErrors())
	require.True(t, IsPathError(diags))
	require.Contains(t, diags[0].Detail, "no such file")

	_, _, diags = Load(dir)
	require.True(t, IsPathError(diags))
	require.Contains(t, diags[0].Detail, "holds no *.hcl files")

	_, _, diags = Load()
	require.True(t, IsPathError(diags))

	empty := writeFile(t, dir, "empty.hcl", "# nothing here\n")
	_, _, diags = Load(empty)
	require.True(t, diags.HasErrors())
	require.False(t, IsPathError(diags))
	require.Equal(t, "No workflows found", diags[0].Summary)

	bad := writeFile(t, dir, "bad.hcl", `workflow "w" { step "a" { handler = "nope" } }`)
	_, _, diags = Load(bad)
	require.True(t, diags.HasErrors())
	require.False(t, IsPathError(diags), "a wrong workflow is not a path problem")
}

func TestCatalogLookup(t *testing.T) {
	t.Parallel()
	src := ""
	for _, v := range []string{"1.2.0", "1.10.0", "1.9.3"} {
		src += `workflow "flow" {
  namespace = "ns"
  version   = "` + v + `"
  step "s" { handler = "builtin.noop" }
}
`
	}
	ws, diags := parse(t, src)
	require.Empty(t, diags)
	c := NewCatalog(ws)

	w, err := c.Lookup(Ref{Namespace: "ns", Name: "flow"})
	require.NoError(t, err)
	require.Equal(t, "1.10.0", w.Version.String(), "no version named: the highest (by semver, not by string)")

	w, err = c.Lookup(Ref{Namespace: "ns", Name: "flow", Version: &Version{1, 2, 0}})
	require.NoError(t, err)
	require.Equal(t, "1.2.0", w.Version.String())

	_, err = c.Lookup(Ref{Namespace: "ns", Name: "flow", Version: &Version{2, 0, 0}})
	var unknown *UnknownWorkflowError
	require.ErrorAs(t, err, &unknown)
	require.Equal(t, "workflow ns/flow has no version 2.0.0 (loaded: 1.10.0, 1.9.3, 1.2.0)", err.Error())

	_, err = c.Lookup(Ref{Namespace: "ns", Name: "other"})
	require.ErrorAs(t, err, &unknown)
	require.Equal(t, "unknown workflow ns/other (loaded: ns/flow)", err.Error())

	require.Len(t, c.Versions("ns", "flow"), 3)
	require.Len(t, c.All(), 3)
}

// A namespace/name's limit is its highest loaded version's, whatever older
// versions say; a workflow without the attribute has none.
func TestCatalogConcurrencyLimits(t *testing.T) {
	t.Parallel()
	src := ""
	for _, w := range []struct{ name, version, attr string }{
		{"flow", "1.0.0", "concurrency = 5"},
		{"flow", "2.0.0", "concurrency = 2"},
		{"flow", "1.5.0", ""},
		{"dropped", "1.0.0", "concurrency = 3"},
		{"dropped", "1.1.0", ""},
		{"free", "1.0.0", ""},
	} {
		src += `workflow "` + w.name + `" {
  namespace = "ns"
  version   = "` + w.version + `"
  ` + w.attr + `
  step "s" { handler = "builtin.noop" }
}
`
	}
	ws, diags := parse(t, src)
	require.Empty(t, diags)
	c := NewCatalog(ws)
	require.Equal(t, map[string]int{"ns/flow": 2}, c.ConcurrencyLimits())
	w, err := c.Lookup(Ref{Namespace: "ns", Name: "flow", Version: &Version{1, 0, 0}})
	require.NoError(t, err)
	require.Equal(t, 5, w.Concurrency, "each version keeps what it declared")
}

func TestGraphJSON(t *testing.T) {
	t.Parallel()
	ws, diags := parse(t, fullExample)
	require.Empty(t, diags)
	b, err := json.Marshal(ws[0].Graph())
	require.NoError(t, err)
	require.JSONEq(t, `{
	  "workflow": "ecommerce/order_fulfillment@1.2.0",
	  "nodes": [
	    {"name": "validate", "handler": "builtin.noop", "level": 0},
	    {"name": "charge", "handler": "payments.charge", "level": 1},
	    {"name": "ship", "handler": "shipping.create_label", "level": 2}
	  ],
	  "edges": [{"from": "validate", "to": "charge"}, {"from": "charge", "to": "ship"}],
	  "levels": [["validate"], ["charge"], ["ship"]]
	}`, string(b))
}

func TestMermaid(t *testing.T) {
	t.Parallel()
	ws, diags := parse(t, `workflow "w" {
  step "start" { handler = "builtin.noop" }
  step "fan-out" {
    handler    = "builtin.echo"
    depends_on = [step.start]
  }
  step "end" {
    handler    = "builtin.noop"
    depends_on = [step.fan-out, step.start]
  }
}`)
	require.Empty(t, diags)
	require.Equal(t, `---
title: default/w@0.1.0
---
graph TD
  step_start["start<br/><small>builtin.noop</small>"]
  s1["fan-out<br/><small>builtin.echo</small>"]
  step_end["end<br/><small>builtin.noop</small>"]
  step_start --> s1
  s1 --> step_end
  step_start --> step_end
`, ws[0].Mermaid())
}

func TestNoPanicOnOddInput(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		"",
		"workflow {}",
		`workflow "a" "b" {}`,
		`workflow "w" { step {} }`,
		`workflow "w" { step "a" { handler = null } }`,
		`workflow "w" { step "a" { handler = "builtin.noop", depends_on = [step] } }`,
		`workflow "w" { step "a" { handler = "builtin.noop" depends_on = [step.a.b] } }`,
		`workflow "w" { step "a" { handler = "builtin.noop" depends_on = [step["a"]] } }`,
		`workflow "w" { context_schema = null
 step "a" { handler = "builtin.noop" } }`,
		`workflow "w" { retry { limit = 1e100 }
 step "a" { handler = "builtin.noop" } }`,
		strings.Repeat("{", 1000),
	} {
		require.NotPanics(t, func() { _, _ = parse(t, src) }, "source %q", src)
	}
}
