package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateShippedWorkflows(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "validate", "../../workflows/")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Equal(t, []string{
		"default/diamond@0.1.0              7 steps  5 levels",
		"default/linear@0.1.0               6 steps  6 levels",
		"default/mixed@0.1.0                7 steps  5 levels",
		"default/parallel_merge@0.1.0       7 steps  3 levels",
		"default/tree@0.1.0                 8 steps  4 levels",
		"ecommerce/order_fulfillment@1.0.0  5 steps  3 levels",
	}, lines)
}

const cycleHCL = `workflow "w" {
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

func TestValidateCycleExits1WithLocation(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "cycle.hcl", cycleHCL)
	r := runCLI(t, "validate", path)
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "Error: "+path+":4:19: Dependency cycle")
	require.Contains(t, r.stderr, "a -> b -> c -> a")
	require.Contains(t, r.stderr, "   4:     depends_on = [step.c]", "the source snippet is shown")
	require.Contains(t, r.stderr, "taskerd: invalid workflows: 1 error")
}

func TestValidateReportsEveryError(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "good.hcl", `workflow "fine" {
  step "a" { handler = "builtin.noop" }
}`)
	bad := writeFile(t, "bad.hcl", `workflow "w" {
  version = "2"
  step "a" { handler = "builtin.nope" }
}`)
	r := runCLI(t, "validate", good, bad)
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stdout, "nothing is reported valid when anything is invalid")
	require.Contains(t, r.stderr, bad+":2:13: Invalid version")
	require.Contains(t, r.stderr, bad+":3:24: Unknown built-in handler")
	require.Contains(t, r.stderr, "invalid workflows: 2 errors")
}

func TestValidatePathProblemsExit2(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "validate", "does/not/exist.hcl")
	require.Equal(t, 2, r.code)
	require.Equal(t, "taskerd: cannot read workflow path: stat does/not/exist.hcl: no such file or directory\n", r.stderr)

	r = runCLI(t, "validate", t.TempDir())
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "holds no *.hcl files")

	r = runCLI(t, "validate")
	require.Equal(t, 2, r.code)
	require.Equal(t, "taskerd: validate needs at least one workflow file or directory; see 'taskerd validate --help'\n", r.stderr)
}

// manyErrorsHCL is a workflow of n steps, each with an argument no step
// has: n errors.
func manyErrorsHCL(n int) string {
	var b strings.Builder
	b.WriteString("workflow \"w\" {\n")
	for i := range n {
		fmt.Fprintf(&b, "  step \"s%d\" {\n    handler = \"builtin.noop\"\n    bogus   = %d\n  }\n", i, i)
	}
	b.WriteString("}\n")
	return b.String()
}

// A file with 1,000 problems prints the first 50 and how many more there
// are (issue 14, item 4: it used to print all of them, each snippet costing
// a scan of the whole file); the exit line still counts them all.
func TestValidatePrintsTheFirst50Problems(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "many.hcl", manyErrorsHCL(1000))
	r := runCLI(t, "validate", path)
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stdout)
	require.Equal(t, 50, strings.Count(r.stderr, "Error: "+path+":"), "50 diagnostics")
	require.Contains(t, r.stderr, "Error: "+path+":4:5: Unsupported argument")
	require.Contains(t, r.stderr, "Error: "+path+":200:5: Unsupported argument", "the 50th")
	require.NotContains(t, r.stderr, path+":204:")
	require.True(t, strings.HasSuffix(r.stderr, "\n... and 950 more errors\ntaskerd: invalid workflows: 1000 errors\n"),
		"%s", r.stderr[max(0, len(r.stderr)-300):])
}
