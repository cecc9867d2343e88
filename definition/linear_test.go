package definition

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// manyErrors writes a workflow of n steps with one problem each: an
// argument no step has, or a dependency on a step that does not exist
// (which looks for a step name to suggest).
func manyErrors(n int) []byte {
	var b strings.Builder
	b.WriteString("workflow \"w\" {\n")
	for i := range n {
		fmt.Fprintf(&b, "  step \"s%d\" {\n    handler = \"builtin.noop\"\n", i)
		if i%2 == 0 {
			b.WriteString("    bogus = 1\n")
		} else {
			fmt.Fprintf(&b, "    depends_on = [step.x%d]\n", i)
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}\n")
	return []byte(b.String())
}

// oneLineErrors writes a workflow whose one long line holds n invalid
// characters, each an error of its own (and one more error after them).
func oneLineErrors(n int) []byte {
	return []byte(`workflow "w" { step "a" { handler = "builtin.noop" config = { x = [` + strings.Repeat("@,", n) + "] } } }\n")
}

// validateAndPrint is what taskerd validate does with a source of at least
// wantErrors errors.
func validateAndPrint(t testing.TB, src []byte, wantErrors int) {
	p := NewParser()
	_, diags := p.ParseSource("many.hcl", src)
	require.GreaterOrEqual(t, len(diags), wantErrors)
	require.Less(t, len(diags), wantErrors+2)
	require.NoError(t, p.WriteDiagnostics(io.Discard, diags, 0, false))
}

// allocations counts the heap allocations f makes.
func allocations(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}

// Validating and printing n errors costs work in proportion to n (issue 14,
// item 4: 1,000 / 2,000 / 4,000 errors took 6 / 23 / 95 s, each snippet
// scanning the whole file and each bad reference comparing itself with
// every step). Work is counted as heap allocations, which unlike time do
// not depend on the machine's load: four times the errors must cost about
// four times as many, not sixteen. (Not parallel: the count is the
// process's.)
func TestValidationWorkIsLinear(t *testing.T) {
	for name, gen := range map[string]func(int) []byte{"steps": manyErrors, "one line": oneLineErrors} {
		small := allocations(func() { validateAndPrint(t, gen(1000), 1000) })
		large := allocations(func() { validateAndPrint(t, gen(4000), 4000) })
		ratio := float64(large) / float64(small)
		t.Logf("%s: %d allocations for 1,000 errors, %d for 4,000: x%.1f", name, small, large, ratio)
		require.Less(t, ratio, 6.0, "%s: 4x the errors cost x%.1f the allocations", name, ratio)
	}
}

// BenchmarkValidateManyErrors parses, validates and prints the diagnostics
// of workflows with 1,000, 2,000 and 4,000 errors; the time per operation
// grows in proportion.
func BenchmarkValidateManyErrors(b *testing.B) {
	for _, n := range []int{1000, 2000, 4000} {
		b.Run(fmt.Sprintf("%d", n), func(b *testing.B) {
			src := manyErrors(n)
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				validateAndPrint(b, src, n)
			}
		})
	}
}
