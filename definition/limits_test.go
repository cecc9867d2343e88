package definition

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A file larger than the bound is refused without being read: a sparse
// gigabyte is refused at once, and a device that never ends is refused
// one byte past the bound.
func TestWorkflowFileSizeIsBounded(t *testing.T) {
	t.Parallel()
	huge := filepath.Join(t.TempDir(), "huge.hcl")
	f, err := os.Create(huge)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(1<<30))
	require.NoError(t, f.Close())
	ws, diags := NewParser().ParseFile(huge)
	require.Empty(t, ws)
	require.Len(t, diags, 1)
	require.Equal(t, "Workflow file too large", diags[0].Summary)
	require.Equal(t, huge+":1:1", at(*diags[0].Subject))
	require.Equal(t, huge+" is 1073741824 bytes (1024.0 MiB); a workflow file may be at most 4194304 bytes (4.0 MiB).", diags[0].Detail)
	require.Equal(t, FileTooLarge{Size: 1 << 30, Limit: DefaultMaxFileSize}, diags[0].Extra)

	// The bound is the Parser's.
	path := filepath.Join(t.TempDir(), "w.hcl")
	src := "workflow \"w\" {\n  step \"a\" { handler = \"builtin.noop\" }\n}\n"
	require.NoError(t, os.WriteFile(path, []byte(src), 0o644))
	p := NewParser()
	p.MaxFileSize = int64(len(src))
	ws, diags = p.ParseFile(path)
	require.Empty(t, diags)
	require.Len(t, ws, 1)
	p.MaxFileSize = int64(len(src)) - 1
	_, diags = p.ParseFile(path)
	require.Len(t, diags, 1)
	require.Equal(t, FileTooLarge{Size: int64(len(src)), Limit: int64(len(src)) - 1}, diags[0].Extra)
	_, diags = p.ParseSource("w.hcl", []byte(src))
	require.Len(t, diags, 1, "ParseSource applies it too")
	require.Equal(t, "Workflow file too large", diags[0].Summary)

	if _, err := os.Stat("/dev/zero"); err == nil {
		p.MaxFileSize = 4096
		_, diags = p.ParseFile("/dev/zero")
		require.Len(t, diags, 1)
		require.Equal(t, FileTooLarge{Size: -1, Limit: 4096}, diags[0].Extra)
		require.Equal(t, "/dev/zero holds more than 4096 bytes (4.0 KiB); a workflow file may be at most 4096 bytes (4.0 KiB).", diags[0].Detail)
	}
}

// A step name may be MaxStepNameLength bytes long, and no longer; the
// diagnostic points at the name.
func TestStepNameLengthIsBounded(t *testing.T) {
	t.Parallel()
	name := "s" + strings.Repeat("x", MaxStepNameLength-1)
	src := "workflow \"w\" {\n  step \"" + name + "\" { handler = \"builtin.noop\" }\n}\n"
	ws, diags := NewParser().ParseSource("ok.hcl", []byte(src))
	require.Empty(t, diags)
	require.Equal(t, name, ws[0].Steps[0].Name)

	long := name + "x"
	src = "workflow \"w\" {\n  step \"a\" { handler = \"builtin.noop\" }\n  step \"" + long + "\" {\n    handler    = \"builtin.noop\"\n    depends_on = [step.a]\n  }\n}\n"
	ws, diags = NewParser().ParseSource("long.hcl", []byte(src))
	require.Empty(t, ws)
	require.Len(t, diags, 1)
	require.Equal(t, "Step name too long", diags[0].Summary)
	require.Equal(t, "long.hcl:3:8", at(*diags[0].Subject))
	require.Equal(t, "This step name is 129 bytes long; a step name may be at most 128 bytes.", diags[0].Detail)
}
