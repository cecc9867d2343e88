package definition

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse feeds arbitrary sources to the parser. It must never panic, and
// whatever it accepts must be a well-formed DAG. The seed corpus is the
// shipped workflows; `go test` runs the seeds, `go test -fuzz=FuzzParse`
// explores from them.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("../workflows/*.hcl")
	require.NoError(f, err)
	require.NotEmpty(f, seeds)
	for _, path := range seeds {
		src, err := os.ReadFile(path)
		require.NoError(f, err)
		f.Add(src)
	}
	f.Add([]byte(fullExample))
	f.Fuzz(func(t *testing.T, src []byte) {
		ws, diags := NewParser().ParseSource("fuzz.hcl", src)
		for _, d := range diags {
			_ = d.Error()
		}
		for _, w := range ws {
			requireTopological(t, w)
			require.NotEmpty(t, w.Mermaid())
			_ = w.Graph()
		}
	})
}
