package definition

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Suggestions still find a close name, and only the first bad references
// of a workflow get one.
func TestSuggestionsAreBounded(t *testing.T) {
	t.Parallel()
	_, diags := NewParser().ParseSource("many.hcl", manyErrors(2*maxSuggestions+20))
	var with, without int
	for _, d := range diags {
		if d.Summary != "Reference to undeclared step" {
			continue
		}
		if strings.Contains(d.Detail, "Did you mean") {
			with++
		} else {
			without++
		}
	}
	require.Equal(t, maxSuggestions, with)
	require.Equal(t, 10, without)
	for _, d := range diags {
		if d.Summary == "Reference to undeclared step" {
			require.Contains(t, d.Detail, `has no step "x1". Did you mean step.s1?`)
			break
		}
	}
}

// editDistance is the whole Levenshtein table, to check the banded one.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func TestEditDistanceWithin(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	word := func() string {
		b := make([]byte, rng.IntN(8))
		for i := range b {
			b[i] = "abc"[rng.IntN(3)]
		}
		return string(b)
	}
	for range 20000 {
		a, b, k := word(), word(), rng.IntN(4)
		want := min(editDistance(a, b), k+1)
		require.Equal(t, want, editDistanceWithin(a, b, k), "%q %q within %d", a, b, k)
	}
}
