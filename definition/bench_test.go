package definition

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/stretchr/testify/require"
)

// randomDAG writes a workflow of n steps where each step depends on up to
// three random earlier steps (so about three parents each, and no cycle).
func randomDAG(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	var b strings.Builder
	b.WriteString("workflow \"big\" {\n  retry {\n    limit = 5\n  }\n")
	for i := range n {
		fmt.Fprintf(&b, "  step \"s%d\" {\n    handler = \"builtin.noop\"\n", i)
		if i > 0 {
			seen := map[int]bool{}
			var deps []string
			for range min(3, i) {
				p := rng.IntN(i)
				if !seen[p] {
					seen[p] = true
					deps = append(deps, fmt.Sprintf("step.s%d", p))
				}
			}
			fmt.Fprintf(&b, "    depends_on = [%s]\n", strings.Join(deps, ", "))
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}\n")
	return []byte(b.String())
}

func TestRandomDAGIsValid(t *testing.T) {
	t.Parallel()
	ws, diags := NewParser().ParseSource("big.hcl", randomDAG(1000, 1))
	require.Empty(t, diags)
	require.Len(t, ws[0].Steps, 1000)
	requireTopological(t, ws[0])
}

// BenchmarkParse1000Steps parses and validates a 1,000-step random DAG.
func BenchmarkParse1000Steps(b *testing.B) {
	src := randomDAG(1000, 1)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		ws, diags := NewParser().ParseSource("big.hcl", src)
		if diags.HasErrors() || len(ws) != 1 {
			b.Fatal(diags)
		}
	}
}

// BenchmarkHCLSyntaxOnly1000Steps is the floor under BenchmarkParse1000Steps:
// the same source through hclsyntax alone, with no decoding or validation.
// It shows how much of the cost is HCL's own lexer and parser.
func BenchmarkHCLSyntaxOnly1000Steps(b *testing.B) {
	src := randomDAG(1000, 1)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, diags := hclsyntax.ParseConfig(src, "big.hcl", hcl.InitialPos); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}
