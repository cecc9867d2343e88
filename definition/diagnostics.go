package definition

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxPrintedDiagnostics is how many diagnostics WriteDiagnostics prints;
// the rest are counted on a last line.
const MaxPrintedDiagnostics = 50

// Bounds of one printed diagnostic, so that its size does not depend on the
// file's: a snippet shows at most snippetLines lines, each cut to a window
// of snippetWidth bytes around the problem, and the summary and detail are
// cut at textLimit bytes.
const (
	snippetLines = 5
	snippetWidth = 160
	textLimit    = 2000
)

// WriteDiagnostics prints diagnostics with the source snippet they point at:
// at most MaxPrintedDiagnostics of them, then a line "... and N more errors"
// when there were more. Each headline starts with file:line:col, as
// compilers print it, so editors and grep can jump to it. width 0 means no
// wrapping; color adds terminal colours.
//
// Its cost is linear in the sizes of the files shown (each is indexed once)
// and does not otherwise grow with the number of diagnostics.
func (p *Parser) WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, width uint, color bool) error {
	dw := &diagWriter{
		out:   bufio.NewWriter(w),
		p:     p,
		width: int(width),
		color: color,
		lines: map[string][]int{},
	}
	shown := diags[:min(len(diags), MaxPrintedDiagnostics)]
	for _, d := range shown {
		dw.write(d)
	}
	if rest := diags[len(shown):]; len(rest) > 0 {
		errs, warns := 0, 0
		for _, d := range rest {
			if d.Severity == hcl.DiagError {
				errs++
			} else {
				warns++
			}
		}
		var parts []string
		if errs > 0 {
			parts = append(parts, countOf(errs, "more error"))
		}
		if warns > 0 {
			parts = append(parts, countOf(warns, "more warning"))
		}
		fmt.Fprintf(dw.out, "... and %s\n", strings.Join(parts, " and "))
	}
	return dw.out.Flush()
}

func countOf(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

type diagWriter struct {
	out   *bufio.Writer
	p     *Parser
	width int
	color bool
	// lines holds, per file, the byte offset where each line starts.
	lines map[string][]int
}

const (
	colorRed       = "\x1b[31m"
	colorYellow    = "\x1b[33m"
	colorHighlight = "\x1b[1;4m"
	colorReset     = "\x1b[0m"
)

func (dw *diagWriter) paint(code, s string) string {
	if !dw.color {
		return s
	}
	return code + s + colorReset
}

func (dw *diagWriter) write(d *hcl.Diagnostic) {
	severity := dw.paint(colorRed, "Error")
	if d.Severity != hcl.DiagError {
		severity = dw.paint(colorYellow, "Warning")
	}
	summary := clip(d.Summary)
	if d.Subject != nil {
		summary = at(*d.Subject) + ": " + summary
	}
	fmt.Fprintf(dw.out, "%s: %s\n\n", severity, summary)
	if d.Subject != nil {
		dw.snippet(d)
	}
	if d.Detail != "" {
		detail := clip(d.Detail)
		if dw.width > 0 {
			detail = wrap(detail, dw.width)
		}
		fmt.Fprintf(dw.out, "%s\n\n", detail)
	}
}

// snippet prints where the diagnostic is and the source lines of its
// subject (and context), when the source is known.
func (dw *diagWriter) snippet(d *hcl.Diagnostic) {
	subject := *d.Subject
	src, ok := dw.p.sources[subject.Filename]
	if !ok {
		return
	}
	where := ""
	if f := dw.p.p.Files()[subject.Filename]; f != nil {
		if block := enclosingBlock(f, subject.Start.Byte); block != nil {
			where = ", in " + block.Type
			for _, l := range block.Labels {
				where += fmt.Sprintf(" %q", l)
			}
		}
	}
	fmt.Fprintf(dw.out, "  on %s line %d%s:\n", subject.Filename, subject.Start.Line, clip(where))

	starts := dw.lineStarts(subject.Filename, src)
	first, last := subject.Start.Line, subject.End.Line
	if d.Context != nil {
		c := hcl.RangeOver(subject, *d.Context)
		if c.End.Line-c.Start.Line < snippetLines {
			first, last = c.Start.Line, c.End.Line
		}
	}
	last = min(last, first+snippetLines-1, len(starts))
	for line := max(first, 1); line <= last; line++ {
		begin := starts[line-1]
		end := len(src)
		if line < len(starts) {
			end = starts[line]
		}
		text := bytes.TrimRight(src[begin:end], "\r\n")
		// The subject's bytes on this line, relative to its start.
		hlFrom := min(max(subject.Start.Byte-begin, 0), len(text))
		hlTo := min(max(subject.End.Byte-begin, 0), len(text))
		if subject.Start.Byte == subject.End.Byte && hlFrom == hlTo && hlTo < len(text) {
			hlTo = nextRune(text, hlTo) // show an empty range as one character
		}
		fmt.Fprintf(dw.out, "%4d: %s\n", line, dw.renderLine(text, hlFrom, hlTo))
	}
	dw.out.WriteByte('\n')
}

// renderLine returns text with [from, to) highlighted, cut to a window of
// snippetWidth bytes around from when it is longer.
func (dw *diagWriter) renderLine(text []byte, from, to int) string {
	lo, hi := 0, len(text)
	if len(text) > snippetWidth {
		lo = max(0, min(from-snippetWidth/3, len(text)-snippetWidth))
		hi = lo + snippetWidth
		for lo > 0 && !utf8.RuneStart(text[lo]) {
			lo++
		}
		for hi < len(text) && !utf8.RuneStart(text[hi]) {
			hi--
		}
		from, to = min(max(from, lo), hi), min(max(to, lo), hi)
	}
	var b strings.Builder
	if lo > 0 {
		b.WriteString("…")
	}
	b.Write(text[lo:from])
	if from < to {
		b.WriteString(dw.paint(colorHighlight, string(text[from:to])))
	}
	b.Write(text[to:hi])
	if hi < len(text) {
		b.WriteString("…")
	}
	return b.String()
}

func nextRune(text []byte, i int) int {
	_, n := utf8.DecodeRune(text[i:])
	return i + n
}

// lineStarts indexes a file's lines once, however many diagnostics it has.
func (dw *diagWriter) lineStarts(filename string, src []byte) []int {
	if starts, ok := dw.lines[filename]; ok {
		return starts
	}
	starts := []int{0}
	for i, c := range src {
		if c == '\n' && i+1 < len(src) {
			starts = append(starts, i+1)
		}
	}
	dw.lines[filename] = starts
	return starts
}

// enclosingBlock returns the top-level block of f that holds byte offset,
// or nil.
func enclosingBlock(f *hcl.File, offset int) *hclsyntax.Block {
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	blocks := body.Blocks // in source order
	i := sort.Search(len(blocks), func(i int) bool { return blocks[i].Range().End.Byte > offset })
	if i < len(blocks) && blocks[i].Range().ContainsOffset(offset) {
		return blocks[i]
	}
	return nil
}

// clip cuts s to textLimit bytes.
func clip(s string) string {
	if len(s) <= textLimit {
		return s
	}
	cut := textLimit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// wrap breaks each line of s at spaces so that it fits width columns where
// it can (a word longer than width keeps its own line).
func wrap(s string, width int) string {
	var b strings.Builder
	for i, line := range strings.Split(s, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		col := 0
		for j, word := range strings.Split(line, " ") {
			n := utf8.RuneCountInString(word)
			if j > 0 {
				if col+1+n > width {
					b.WriteByte('\n')
					col = 0
				} else {
					b.WriteByte(' ')
					col++
				}
			}
			b.WriteString(word)
			col += n
		}
	}
	return b.String()
}
