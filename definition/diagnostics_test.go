package definition

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// At most MaxPrintedDiagnostics diagnostics are printed, then a count of
// the rest; the headlines keep their file:line:col.
func TestWriteDiagnosticsPrintsTheFirst50(t *testing.T) {
	t.Parallel()
	p := NewParser()
	_, diags := p.ParseSource("many.hcl", manyErrors(120))
	require.Len(t, diags, 120)
	var out bytes.Buffer
	require.NoError(t, p.WriteDiagnostics(&out, diags, 0, false))
	text := out.String()
	require.Equal(t, 50, strings.Count(text, "\nError: ")+1, "50 headlines (the first starts the text)")
	require.True(t, strings.HasPrefix(text, "Error: many.hcl:4:5: Unsupported argument\n"), text[:200])
	// Decoding reports the 60 unknown arguments before it resolves the
	// dependencies.
	require.Contains(t, text, "Error: many.hcl:396:5: Unsupported argument", "the 50th")
	require.NotContains(t, text, "many.hcl:404:")
	require.NotContains(t, text, "Reference to undeclared step")
	require.True(t, strings.HasSuffix(text, "\n... and 70 more errors\n"), text[len(text)-200:])

	// Exactly 50, or one more, says nothing or "1 more error".
	out.Reset()
	require.NoError(t, p.WriteDiagnostics(&out, diags[:50], 0, false))
	require.NotContains(t, out.String(), "more error")
	out.Reset()
	require.NoError(t, p.WriteDiagnostics(&out, diags[:51], 0, false))
	require.True(t, strings.HasSuffix(out.String(), "\n... and 1 more error\n"))
}

// A snippet shows a window of a long line around the problem, not the
// line: a 110 KB line with thousands of errors once printed a gigabyte.
func TestSnippetsOfLongLinesAreCut(t *testing.T) {
	t.Parallel()
	src := `workflow "w" { step "a" { handler = "builtin.noop" config = { x = [` +
		strings.Repeat("1, ", 20000) + "@, " + strings.Repeat("2, ", 20000) + "] } } }\n"
	p := NewParser()
	_, diags := p.ParseSource("long.hcl", []byte(src))
	require.NotEmpty(t, diags)
	diags = diags[:1]
	var out bytes.Buffer
	require.NoError(t, p.WriteDiagnostics(&out, diags, 0, true))
	text := out.String()
	require.Less(t, len(text), 1000, text)
	require.Contains(t, text, "long.hcl:1:60068: Invalid character")
	require.Contains(t, text, "   1: …")
	require.Contains(t, text, "1, 1, \x1b[1;4m@\x1b[0m, 2, 2, ", "the character is shown highlighted")
	require.Contains(t, text, "2,…\n\nThis character is not used")
}

// Only the lines of the problem are printed, with the block it is in.
func TestSnippetShowsTheEnclosingBlock(t *testing.T) {
	t.Parallel()
	src := "workflow \"a\" {\n  step \"x\" { handler = \"builtin.noop\" }\n}\n\nworkflow \"b\" {\n  step \"y\" { handler = \"builtin.nope\" }\n}\n"
	p := NewParser()
	_, diags := p.ParseSource("two.hcl", []byte(src))
	require.Len(t, diags, 1)
	var out bytes.Buffer
	require.NoError(t, p.WriteDiagnostics(&out, diags, 40, false))
	require.Equal(t, `Error: two.hcl:6:24: Unknown built-in handler

  on two.hcl line 6, in workflow "b":
   6:   step "y" { handler = "builtin.nope" }

There is no built-in handler
"builtin.nope". The built-in handlers
are builtin.echo, builtin.fail,
builtin.noop, builtin.sleep.

`, out.String())
}
