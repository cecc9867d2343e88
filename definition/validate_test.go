package definition

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/stretchr/testify/require"
)

// wantDiag is one expected diagnostic: its summary, where its subject starts,
// and a fragment of its detail.
type wantDiag struct {
	summary string
	line    int
	col     int
	detail  string
}

func requireDiags(t *testing.T, diags hcl.Diagnostics, want ...wantDiag) {
	t.Helper()
	var got []string
	for _, d := range diags {
		got = append(got, d.Error())
	}
	require.Len(t, diags, len(want), "diagnostics: %s", strings.Join(got, "\n"))
	for i, w := range want {
		d := diags[i]
		require.Equal(t, hcl.DiagError, d.Severity)
		require.Equal(t, w.summary, d.Summary, "diagnostic %d: %s", i, d.Error())
		require.NotNil(t, d.Subject, "diagnostic %d has no subject: %s", i, d.Error())
		require.Equal(t, "test.hcl", d.Subject.Filename)
		require.Equal(t, w.line, d.Subject.Start.Line, "line of %s", d.Error())
		require.Equal(t, w.col, d.Subject.Start.Column, "column of %s", d.Error())
		require.Contains(t, d.Detail, w.detail)
	}
}

func parse(t *testing.T, src string) ([]*Workflow, hcl.Diagnostics) {
	t.Helper()
	return NewParser().ParseSource("test.hcl", []byte(src))
}

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		src  string
		want []wantDiag
		// valid counts the workflows that are fine despite the errors.
		valid int
	}{
		{
			name: "syntax error",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
  }
  oops = 
}`,
			want: []wantDiag{{"Invalid expression", 5, 10, "Expected the start of an expression"}},
		},
		{
			name: "unknown attribute in workflow",
			src: `workflow "w" {
  colour = "blue"
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Unsupported argument", 2, 3, `An argument named "colour" is not expected here`}},
		},
		{
			name: "unknown attribute in step",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    retries = 3
  }
}`,
			want: []wantDiag{{"Unsupported argument", 4, 5, `An argument named "retries" is not expected here`}},
		},
		{
			name: "unknown block",
			src: `workflow "w" {
  step "a" { handler = "builtin.noop" }
  hooks {
  }
}`,
			want: []wantDiag{{"Unsupported block type", 3, 3, `Blocks of type "hooks" are not expected here`}},
		},
		{
			name: "unknown top-level block",
			src: `pipeline "p" {
}`,
			want: []wantDiag{{"Unsupported block type", 1, 1, `Blocks of type "pipeline" are not expected here`}},
		},
		{
			name: "missing handler",
			src: `workflow "w" {
  step "a" {
    description = "no handler"
  }
}`,
			want: []wantDiag{{"Missing required argument", 2, 12, `The argument "handler" is required`}},
		},
		{
			name: "dependency on a missing step",
			src: `workflow "w" {
  step "validate" { handler = "builtin.noop" }
  step "charge" {
    handler    = "builtin.noop"
    depends_on = [step.validat]
  }
}`,
			want: []wantDiag{{"Reference to undeclared step", 5, 19, `has no step "validat". Did you mean step.validate?`}},
		},
		{
			name: "dependency written as a string",
			src: `workflow "w" {
  step "a" { handler = "builtin.noop" }
  step "b" {
    handler    = "builtin.noop"
    depends_on = ["a"]
  }
}`,
			want: []wantDiag{{"Invalid dependency reference", 5, 19, "A dependency is written step.NAME"}},
		},
		{
			name: "dependency on something that is not a step",
			src: `workflow "w" {
  step "a" { handler = "builtin.noop" }
  step "b" {
    handler    = "builtin.noop"
    depends_on = [task.a]
  }
}`,
			want: []wantDiag{{"Invalid dependency reference", 5, 19, "A dependency is written step.NAME"}},
		},
		{
			name: "depends_on not a list",
			src: `workflow "w" {
  step "a" { handler = "builtin.noop" }
  step "b" {
    handler    = "builtin.noop"
    depends_on = step.a
  }
}`,
			want: []wantDiag{{"Invalid depends_on", 5, 18, "depends_on must be a list"}},
		},
		{
			name: "duplicate dependency",
			src: `workflow "w" {
  step "a" { handler = "builtin.noop" }
  step "b" {
    handler    = "builtin.noop"
    depends_on = [step.a, step.a]
  }
}`,
			want: []wantDiag{{"Duplicate dependency", 5, 27, "already depends on step.a at test.hcl:5:19"}},
		},
		{
			name: "step depends on itself",
			src: `workflow "w" {
  step "a" {
    handler    = "builtin.noop"
    depends_on = [step.a]
  }
}`,
			want: []wantDiag{{"Step depends on itself", 4, 19, `Step "a" lists step.a in its own depends_on`}},
		},
		{
			name: "three-step cycle",
			src: `workflow "w" {
  step "a" {
    handler    = "builtin.noop"
    depends_on = [step.c]
  }
  step "b" {
    handler    = "builtin.noop"
    depends_on = [step.a]
  }
  step "c" {
    handler    = "builtin.noop"
    depends_on = [step.b]
  }
}`,
			want: []wantDiag{{"Dependency cycle", 4, 19, "form a cycle: a -> b -> c -> a."}},
		},
		{
			name: "cycle reachable from a root, with a way out",
			src: `workflow "w" {
  step "root" { handler = "builtin.noop" }
  step "x" {
    handler    = "builtin.noop"
    depends_on = [step.root, step.z]
  }
  step "y" {
    handler    = "builtin.noop"
    depends_on = [step.x]
  }
  step "z" {
    handler    = "builtin.noop"
    depends_on = [step.y]
  }
  step "leaf" {
    handler    = "builtin.noop"
    depends_on = [step.z]
  }
}`,
			want: []wantDiag{{"Dependency cycle", 5, 30, "form a cycle: x -> y -> z -> x."}},
		},
		{
			name: "two separate cycles are both reported",
			src: `workflow "w" {
  step "a" {
    handler    = "builtin.noop"
    depends_on = [step.b]
  }
  step "b" {
    handler    = "builtin.noop"
    depends_on = [step.a]
  }
  step "c" {
    handler    = "builtin.noop"
    depends_on = [step.d]
  }
  step "d" {
    handler    = "builtin.noop"
    depends_on = [step.c]
  }
}`,
			want: []wantDiag{
				{"Dependency cycle", 4, 19, "a -> b -> a"},
				{"Dependency cycle", 12, 19, "c -> d -> c"},
			},
		},
		{
			name: "duplicate step names",
			src: `workflow "w" {
  step "a" { handler = "builtin.noop" }
  step "a" { handler = "builtin.echo" }
}`,
			want: []wantDiag{{"Duplicate step", 3, 8, "Previous definition was at test.hcl:2:3"}},
		},
		{
			name: "duplicate workflow identity in one file",
			src: `workflow "w" {
  version = "1.0.0"
  step "a" { handler = "builtin.noop" }
}
workflow "w" {
  version = "1.0.0"
  step "a" { handler = "builtin.noop" }
}`,
			want:  []wantDiag{{"Duplicate workflow", 5, 1, "default/w@1.0.0 is defined twice. Previous definition was at test.hcl:1:1"}},
			valid: 1,
		},
		{
			name: "bad durations",
			src: `workflow "w" {
  timeout = "soon"
  step "a" {
    handler = "builtin.noop"
    timeout = "-5s"
  }
  step "b" {
    handler = "builtin.noop"
    timeout = 30
  }
}`,
			want: []wantDiag{
				{"Invalid duration", 2, 13, `timeout = "soon" is not a duration`},
				{"Invalid duration", 5, 15, `timeout must be longer than zero, not "-5s"`},
				{"Invalid duration", 9, 15, `timeout = "30" is not a duration`},
			},
		},
		{
			name: "bad semver",
			src: `workflow "w" {
  version = "1.2"
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Invalid version", 2, 13, `"1.2" is not a version`}},
		},
		{
			name: "semver with leading zero",
			src: `workflow "w" {
  version = "1.02.0"
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Invalid version", 2, 13, `"1.02.0" is not a version`}},
		},
		{
			name: "retry limit below one",
			src: `workflow "w" {
  retry {
    limit = 0
  }
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Invalid retry limit", 3, 13, "must be at least 1, not 0"}},
		},
		{
			name: "concurrency below one",
			src: `workflow "w" {
  concurrency = 0
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Invalid concurrency", 2, 17, "must be at least 1, not 0"}},
		},
		{
			name: "concurrency not whole",
			src: `workflow "w" {
  concurrency = 1.5
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Invalid value", 2, 17, ""}},
		},
		{
			name: "retry limit not whole",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    retry { limit = 2.5 }
  }
}`,
			want: []wantDiag{{"Invalid value", 4, 21, "limit must be a whole number, not 2.5"}},
		},
		{
			name: "base longer than max",
			src: `workflow "w" {
  retry {
    base = "1m"
    max  = "10s"
  }
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Invalid retry backoff", 3, 12, "base (1m0s) is longer than max (10s)"}},
		},
		{
			name: "backoff out of bounds",
			src: `workflow "w" {
  retry {
    base = "10us"
    max  = "48h"
  }
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{
				{"Invalid retry backoff", 3, 12, "base must be at least 1ms, not 10µs"},
				{"Invalid retry backoff", 4, 12, "max must be at most 24h0m0s, not 48h0m0s"},
			},
		},
		{
			name: "step base longer than inherited max",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    retry {
      base = "45s"
    }
  }
}`,
			want: []wantDiag{{"Invalid retry backoff", 5, 14, "base (45s) is longer than max (30s)"}},
		},
		{
			name: "handler with bad syntax",
			src: `workflow "w" {
  step "a" { handler = "Payments.Charge" }
  step "b" { handler = "charge" }
  step "c" { handler = "a.b.c" }
}`,
			want: []wantDiag{
				{"Invalid handler", 2, 24, `handler = "Payments.Charge"`},
				{"Invalid handler", 3, 24, `handler = "charge"`},
				{"Invalid handler", 4, 24, `handler = "a.b.c"`},
			},
		},
		{
			name: "unknown builtin handler",
			src: `workflow "w" {
  step "a" { handler = "builtin.explode" }
}`,
			want: []wantDiag{{"Unknown built-in handler", 2, 24, "The built-in handlers are builtin.echo, builtin.fail, builtin.noop, builtin.sleep."}},
		},
		{
			name: "invalid context schema",
			src: `workflow "w" {
  context_schema = {
    type     = "objekt"
    required = "order_id"
  }
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Invalid context_schema", 2, 20, "does not conform to JSON Schema"}},
		},
		{
			name: "context schema that is not an object",
			src: `workflow "w" {
  context_schema = ["type"]
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Invalid context_schema", 2, 20, "context_schema must be an object"}},
		},
		{
			name: "context schema referring to another document",
			src: `workflow "w" {
  context_schema = { "$ref" = "https://example.com/order.json" }
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Invalid context_schema", 2, 20, "is not loaded"}},
		},
		{
			name: "variables are not allowed in values",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    config  = { region = var.region }
  }
}`,
			want: []wantDiag{{"Variables not allowed", 4, 26, "Variables may not be used here"}},
		},
		{
			name: "wrong types",
			src: `workflow "w" {
  step "a" {
    handler   = "builtin.noop"
    retryable = "sometimes"
    skippable = ["yes"]
  }
}`,
			want: []wantDiag{
				{"Invalid value", 4, 17, "retryable must be a bool"},
				{"Invalid value", 5, 17, "skippable must be a bool"},
			},
		},
		{
			name: "invalid names",
			src: `workflow "my workflow" {
  namespace = "e/commerce"
  step "a b" { handler = "builtin.noop" }
}`,
			want: []wantDiag{
				{"Invalid workflow name", 1, 10, `"my workflow" is not a valid workflow name`},
				{"Invalid namespace", 2, 15, `"e/commerce" is not a valid namespace`},
				{"Invalid step name", 3, 8, `"a b" is not a valid step name`},
			},
		},
		{
			name: "workflow without steps",
			src: `workflow "w" {
  description = "nothing to do"
}`,
			want: []wantDiag{{"Workflow without steps", 1, 1, `Workflow "w" has no step blocks`}},
		},
		{
			name: "duplicate retry blocks",
			src: `workflow "w" {
  retry { limit = 2 }
  retry { limit = 4 }
  step "a" { handler = "builtin.noop" }
}`,
			want: []wantDiag{{"Duplicate retry block", 3, 3, "Previous definition was at test.hcl:2:3"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			workflows, diags := parse(t, tc.src)
			requireDiags(t, diags, tc.want...)
			require.Len(t, workflows, tc.valid, "an invalid workflow must not be returned")
		})
	}
}

func TestAllErrorsOfAFileAreReported(t *testing.T) {
	t.Parallel()
	// One file, problems in two workflows and several steps: every one of
	// them comes back from one parse, in source order.
	src := `workflow "first" {
  version = "one"
  step "a" {
    handler    = "builtin.nope"
    depends_on = [step.missing]
  }
}

workflow "second" {
  retry { limit = 0 }
  step "x" {
    handler    = "builtin.noop"
    depends_on = [step.y]
  }
  step "y" {
    handler    = "builtin.noop"
    depends_on = [step.x]
    timeout    = "forever"
  }
}
`
	workflows, diags := parse(t, src)
	require.Empty(t, workflows)
	requireDiags(t, diags,
		wantDiag{"Invalid version", 2, 13, `"one" is not a version`},
		wantDiag{"Unknown built-in handler", 4, 18, "no built-in handler"},
		wantDiag{"Reference to undeclared step", 5, 19, `no step "missing"`},
		wantDiag{"Invalid retry limit", 10, 19, "at least 1"},
		wantDiag{"Invalid duration", 18, 18, `"forever" is not a duration`},
		wantDiag{"Dependency cycle", 13, 19, "x -> y -> x"},
	)
}

func TestDiagnosticsPrintWithSourceSnippet(t *testing.T) {
	t.Parallel()
	p := NewParser()
	src := `workflow "w" {
  step "a" {
    handler    = "builtin.noop"
    depends_on = [step.c]
  }
  step "b" {
    handler    = "builtin.noop"
    depends_on = [step.a]
  }
  step "c" {
    handler    = "builtin.noop"
    depends_on = [step.b]
  }
}
`
	_, diags := p.ParseSource("cycle.hcl", []byte(src))
	require.True(t, diags.HasErrors())
	var out bytes.Buffer
	require.NoError(t, p.WriteDiagnostics(&out, diags, 0, false))
	require.Contains(t, out.String(), "Error: cycle.hcl:4:19: Dependency cycle")
	require.Contains(t, out.String(), "on cycle.hcl line 4, in workflow \"w\":")
	require.Contains(t, out.String(), "   4:     depends_on = [step.c]")
	require.Contains(t, out.String(), "a -> b -> c -> a")
}
