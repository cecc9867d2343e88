package definition

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/internal/hclnest"
)

// inConfig puts expr, on line 4, as a step's config.
func inConfig(expr string) string {
	return "workflow \"w\" {\n  step \"a\" {\n    handler = \"builtin.noop\"\n    config = { x = " + expr + " }\n  }\n}\n"
}

// Deeply nested sources are refused before they reach the parser, whose
// recursion would otherwise exhaust the stack and kill the process (issue
// 14, item 3): 100,000 levels of each construct hclsyntax recurses on.
func TestDeepNestingIsRefusedWithItsLine(t *testing.T) {
	t.Parallel()
	const n = 100_000
	r := strings.Repeat
	cases := map[string]string{
		"parentheses":         inConfig(r("(", n) + "1" + r(")", n)),
		"arrays":              inConfig(r("[", n) + r("]", n)),
		"objects":             inConfig(r("{a=", n) + "1" + r("}", n)),
		"unclosed":            inConfig(r("(", n)),
		"calls":               inConfig(r("f(", n) + r(")", n)),
		"for expressions":     inConfig(r("[for x in ", n) + "[]" + r(" : x]", n)),
		"template sequences":  inConfig(r(`"${`, n) + "1" + r(`}"`, n)),
		"negations":           inConfig(r("!", n) + "true"),
		"minus signs":         inConfig(r("-", n) + "1"),
		"sums":                inConfig(r("1 + ", n) + "1"),
		"comparisons":         inConfig(r("1 != ", n) + "1"),
		"conditionals":        inConfig(r("true ? 1 : ", n) + "2"),
		"indexes":             inConfig("[1]" + r("[0]", n)),
		"splats":              inConfig("[1]" + r("[*]", n)),
		"template for blocks": inConfig(`"` + r("%{for x in [1]}", n) + r("%{endfor}", n) + `"`),
		"heredoc if blocks":   "workflow \"w\" {\n  step \"a\" {\n    handler = \"builtin.noop\"\n    description = <<EOT\n" + r("%{if true}", n) + r("%{endif}", n) + "\nEOT\n  }\n}\n",
		"blocks":              "workflow \"w\" {\n" + r("b {\n", n) + r("}\n", n) + "}\n",
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ws, diags := NewParser().ParseSource("deep.hcl", []byte(src))
			require.Empty(t, ws)
			require.Len(t, diags, 1, "one diagnostic, not a parse")
			d := diags[0]
			require.Equal(t, hcl.DiagError, d.Severity)
			require.Equal(t, "Nesting too deep", d.Summary)
			require.Contains(t, d.Detail, "more than 100 levels")
			require.NotNil(t, d.Subject)
			require.Equal(t, "deep.hcl", d.Subject.Filename)
			switch name {
			case "blocks":
				require.Equal(t, 101, d.Subject.Start.Line, "the line of the 101st level")
			case "heredoc if blocks":
				require.Equal(t, 5, d.Subject.Start.Line, "the heredoc's first line")
			default:
				require.Equal(t, 4, d.Subject.Start.Line)
			}
		})
	}
}

// The bound is where it says: 100 levels pass, 101 do not, and the
// diagnostic points at the bracket that opens the 101st.
func TestNestingBoundIsExact(t *testing.T) {
	t.Parallel()
	// workflow { step { config = { x = ...: three levels before expr.
	ok := inConfig(strings.Repeat("[", 97) + strings.Repeat("]", 97))
	require.Empty(t, CheckNesting("ok.hcl", []byte(ok)))
	deep := inConfig(strings.Repeat("[", 98) + strings.Repeat("]", 98))
	diags := CheckNesting("deep.hcl", []byte(deep))
	require.Len(t, diags, 1)
	col := len("    config = { x = ") + 98
	require.Equal(t, fmt.Sprintf("deep.hcl:4:%d", col), at(*diags[0].Subject))
}

// Brackets inside strings, heredocs and comments are text, not nesting: a
// file full of them loads.
func TestNestingIgnoresBracketsInText(t *testing.T) {
	t.Parallel()
	lots := strings.Repeat("([{", 200)
	src := `# ` + lots + `
// ` + lots + `
/* ` + lots + `
   ` + lots + ` */
workflow "w" {
  description = "` + lots + ` \" ` + lots + ` \\" # ` + lots + ` $${ ` + lots + ` %%{ ` + lots + `"
  step "a" {
    handler     = "builtin.echo"
    description = <<EOT
` + lots + `
  "` + lots + `
  EOTX ` + lots + `
$${ ` + lots + `
EOT
    config = {
      text = <<-EOF
        ` + lots + ` ${"${"[{(" /* ` + lots + ` */}"} ` + lots + `
        %{ if true }` + lots + `%{ endif }
        EOF
      list = [for s in ["` + lots + `"] : "${s}` + lots + `"] /* ` + lots + ` */
      # ` + lots + `
    }
  }
}
`
	require.Empty(t, CheckNesting("text.hcl", []byte(src)))
	ws, diags := NewParser().ParseSource("text.hcl", []byte(src))
	require.Empty(t, diags)
	require.Len(t, ws, 1)
}

// Each expression of a list or object, and each attribute, counts its
// operators afresh: many short expressions side by side are not deep.
func TestNestingCountsOperatorsPerExpression(t *testing.T) {
	t.Parallel()
	items := strings.Repeat("-1 + 2 * 3 == 5 && !false, ", 1000)
	attrs := strings.Repeat("      n = -1 + 2 - 3\n", 1000)
	src := "workflow \"w\" {\n  step \"a\" {\n    handler = \"builtin.noop\"\n    config = {\n      list = [" + items + "]\n" + attrs + "    }\n  }\n}\n"
	require.Empty(t, CheckNesting("ops.hcl", []byte(src)))
}

// An unterminated /* is not a comment for hclsyntax's lexer, so the
// brackets after it count.
func TestNestingUnterminatedBlockCommentIsCode(t *testing.T) {
	t.Parallel()
	src := inConfig("/* " + strings.Repeat("(", 200))
	diags := CheckNesting("c.hcl", []byte(src))
	require.Len(t, diags, 1)
}

// lexerNesting measures, from hclsyntax's own tokens, how deeply src nests
// brackets, strings, heredocs, template sequences and template directives:
// what hclnest.Scan reports as MaxStructure, computed independently.
func lexerNesting(src []byte) int {
	tokens, _ := hclsyntax.LexConfig(src, "f.hcl", hcl.InitialPos)
	type frame struct {
		kind   hclsyntax.TokenType
		blocks int
	}
	var stack []frame
	depth, deepest := 0, 0
	popTo := func(kinds ...hclsyntax.TokenType) {
		for k := len(stack) - 1; k >= 0; k-- {
			for _, kind := range kinds {
				if stack[k].kind == kind {
					for len(stack) > k {
						depth -= 1 + stack[len(stack)-1].blocks
						stack = stack[:len(stack)-1]
					}
					return
				}
			}
		}
	}
	for i, tok := range tokens {
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOParen, hclsyntax.TokenOBrack, hclsyntax.TokenOQuote,
			hclsyntax.TokenOHeredoc, hclsyntax.TokenTemplateInterp:
			stack = append(stack, frame{kind: tok.Type})
			depth++
		case hclsyntax.TokenTemplateControl:
			stack = append(stack, frame{kind: hclsyntax.TokenTemplateInterp})
			depth++
			next := i + 1
			for next < len(tokens) && (tokens[next].Type == hclsyntax.TokenComment || tokens[next].Type == hclsyntax.TokenNewline) {
				next++
			}
			if next < len(tokens) && tokens[next].Type == hclsyntax.TokenIdent && len(stack) >= 2 {
				tmpl := &stack[len(stack)-2]
				switch string(tokens[next].Bytes) {
				case "if", "for":
					tmpl.blocks++
					depth++
				case "endif", "endfor":
					if tmpl.blocks > 0 {
						tmpl.blocks--
						depth--
					}
				}
			}
		case hclsyntax.TokenCBrace, hclsyntax.TokenTemplateSeqEnd:
			popTo(hclsyntax.TokenOBrace, hclsyntax.TokenTemplateInterp)
		case hclsyntax.TokenCParen, hclsyntax.TokenCBrack:
			open := hclsyntax.TokenOParen
			if tok.Type == hclsyntax.TokenCBrack {
				open = hclsyntax.TokenOBrack
			}
			if len(stack) > 0 && stack[len(stack)-1].kind == open {
				popTo(open)
			}
		case hclsyntax.TokenCQuote:
			popTo(hclsyntax.TokenOQuote)
		case hclsyntax.TokenCHeredoc:
			popTo(hclsyntax.TokenOHeredoc)
		}
		deepest = max(deepest, depth)
	}
	return deepest
}

// FuzzCheckNesting feeds arbitrary sources to CheckNesting. It never
// panics; it never sees less nesting than hclsyntax's lexer does (so that
// text it skips as a string or comment is text to the lexer too); and
// whatever it lets through, hclsyntax parses without crashing. `go test`
// runs the seeds; run `go test ./definition -run '^$' -fuzz FuzzCheckNesting
// -fuzztime 2m` to explore.
func FuzzCheckNesting(f *testing.F) {
	seeds, err := filepath.Glob("../workflows/*.hcl")
	require.NoError(f, err)
	for _, path := range seeds {
		src, err := os.ReadFile(path)
		require.NoError(f, err)
		f.Add(src)
	}
	for _, s := range []string{
		fullExample,
		`x = "${ { a = "}" }.a }" # (`,
		"x = <<EOT\n${ <<-IN\n  [(\n  IN\n}\n  EOT\ny = [(\n",
		"x = <<EOT\r\nEOT\r\n",
		`x = "%{ if a }%{ for b in c }${ d }%{ endfor }%{ else }%{ endif }"`,
		`x = "\${ ( $${ ( %%{ ( \" (" /* ( */ [ # (`,
		"x = /* [ \n y = [[[",
		`x = "${ ( }" y = [ ~} ( ]`,
		`x = a-b-c - -1e-5 != 2 ? [1][0] : f(g(1))[*]`,
		"x = \"${ \"${ \"${ 1 }\" }\" }\"",
		"x = <<É\n(\nÉ\ny = <<€\n((\n€\n",
		"x = [é, \xca\"(, \xe0\x22\x28(, a\xff(]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		diags := CheckNesting("fuzz.hcl", src)
		r := hclnest.Scan(src, 1<<30)
		require.False(t, r.Exceeded)
		require.GreaterOrEqual(t, r.MaxStructure, lexerNesting(src), "hclnest sees less nesting than the lexer")
		if diags.HasErrors() {
			require.Len(t, diags, 1)
			require.NotNil(t, diags[0].Subject)
			return
		}
		_, _ = hclsyntax.ParseConfig(src, "fuzz.hcl", hcl.InitialPos)
		ws, diags := NewParser().ParseSource("fuzz.hcl", src)
		for _, d := range diags {
			_ = d.Error()
		}
		for _, w := range ws {
			requireTopological(t, w)
		}
	})
}
