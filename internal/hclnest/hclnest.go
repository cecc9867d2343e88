// Package hclnest measures how deeply an HCL native-syntax source nests,
// without parsing it.
//
// hclsyntax parses and evaluates recursively: every bracket, template
// sequence, unary operator, conditional, index and binary operator of one
// expression costs stack, and a source a few hundred kilobytes long can nest
// deeply enough to exhaust Go's stack, which kills the process (it is not a
// panic that recover could catch). Scan reads the bytes once, the way
// hclsyntax's lexer divides them into code, quoted strings, heredocs and
// comments, and reports the first place a source nests deeper than a bound,
// so that such a file can be refused before it reaches the parser.
//
// What counts as one level:
//   - each open ( [ { of code, quoted string "...", heredoc <<EOT, and
//     template sequence ${ } or %{ };
//   - each %{ if } or %{ for } of a template not yet closed by its
//     %{ endif } or %{ endfor };
//   - within one expression of a code bracket (up to the next , or =), each
//     operator (! - + * / % == != < > <= >= && || ?) and each ( or [ that
//     follows a term (a call, an index or a splat), because each of these
//     nests the expression one level deeper in the parser or the evaluator.
//
// Brackets inside strings, heredocs and comments do not count. The count
// errs on the high side only for sources that are malformed anyway (an
// unmatched closing bracket is ignored, for instance).
package hclnest

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Check returns an error diagnostic at the first place src nests deeper
// than limit levels, or nil.
func Check(filename string, src []byte, limit int) hcl.Diagnostics {
	r := Scan(src, limit)
	if !r.Exceeded {
		return nil
	}
	start := Pos(src, r.Offset)
	end := start
	end.Byte++
	end.Column++
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Nesting too deep",
		Detail: fmt.Sprintf("Brackets, strings, template sequences and operators nest more than %d levels deep here. "+
			"The file is refused rather than parsed: nesting this deep would exhaust the parser's stack. Flatten the expression.", limit),
		Subject: &hcl.Range{Filename: filename, Start: start, End: end},
	}}
}

// Pos returns the line and column of byte offset off of src, columns
// counted in characters.
func Pos(src []byte, off int) hcl.Pos {
	before := src[:off]
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	return hcl.Pos{
		Line:   bytes.Count(before, []byte("\n")) + 1,
		Column: utf8.RuneCount(before[lineStart:]) + 1,
		Byte:   off,
	}
}

// Result is what Scan found.
type Result struct {
	// Exceeded reports whether the source nests deeper than the limit;
	// Offset is then the byte offset where it first does, and the scan
	// stopped there.
	Exceeded bool
	Offset   int
	// MaxStructure is the deepest nesting of brackets, strings, heredocs,
	// template sequences and template directives seen (operators left out),
	// up to where the scan stopped. Tests compare it with hclsyntax's lexer.
	MaxStructure int
}

type kind uint8

const (
	kindRoot    kind = iota // the file's body: code, never closed
	kindBrace               // { } of code
	kindParen               // ( )
	kindBracket             // [ ]
	kindSeq                 // ${ } or %{ }: code inside a template
	kindQuoted              // "...": a template
	kindHeredoc             // <<EOT ... EOT: a template
)

type frame struct {
	kind kind
	// ops counts, in a code frame, the operators and postfix brackets of the
	// expression being read (since the frame opened or the last , or =).
	ops int
	// blocks counts, in a template frame, its %{ if } and %{ for }
	// directives not yet closed.
	blocks int
	// directive marks a %{ sequence whose keyword has not been read yet.
	directive bool
	// marker and lineStart belong to a heredoc: its closing marker, and
	// whether the scan is at the start of one of its lines (where only the
	// marker may close it).
	marker    []byte
	lineStart bool
}

func (f *frame) code() bool { return f.kind <= kindSeq }

type scanner struct {
	src       []byte
	limit     int
	stack     []frame
	depth     int // levels open: frames (the root excepted) + ops + blocks
	structure int // levels open without the ops
	result    Result
	// afterTerm is whether the last code token ended a term, so that a
	// following ( or [ is a call or an index rather than a new term.
	afterTerm bool
	// buf holds the window token lexes.
	buf []byte
	// lastBlockClose is where the source's last "*/" starts (-2: not
	// looked up yet), so that an unterminated /* is recognised without
	// searching the rest of the file again each time.
	lastBlockClose int
}

// Scan reads src and reports whether it nests deeper than limit.
func Scan(src []byte, limit int) Result {
	s := &scanner{src: src, limit: limit, stack: []frame{{kind: kindRoot}}, lastBlockClose: -2}
	s.run()
	return s.result
}

func (s *scanner) top() *frame { return &s.stack[len(s.stack)-1] }

// add changes the depth by n levels at offset at, of which structural are
// not operators; it reports false once the depth exceeds the limit.
func (s *scanner) add(at, n, structural int) bool {
	s.depth += n
	s.structure += structural
	s.result.MaxStructure = max(s.result.MaxStructure, s.structure)
	if s.depth > s.limit {
		s.result.Exceeded, s.result.Offset = true, at
		return false
	}
	return true
}

func (s *scanner) push(at int, f frame) bool {
	s.stack = append(s.stack, f)
	return s.add(at, 1, 1)
}

// popTo closes the frames above index k and frame k itself.
func (s *scanner) popTo(k int) {
	for len(s.stack) > k {
		f := s.top()
		s.depth -= 1 + f.ops + f.blocks
		s.structure -= 1 + f.blocks
		s.stack = s.stack[:len(s.stack)-1]
	}
}

// op counts an operator, or a postfix bracket, of the current expression.
func (s *scanner) op(at int) bool {
	s.top().ops++
	s.afterTerm = false
	return s.add(at, 1, 0)
}

// endExpression starts a new expression in the current code frame.
func (s *scanner) endExpression() {
	f := s.top()
	s.depth -= f.ops
	f.ops = 0
	s.afterTerm = false
}

func (s *scanner) run() {
	i := 0
	if bytes.HasPrefix(s.src, []byte("\xEF\xBB\xBF")) {
		i = 3 // a byte order mark, which the lexer skips
	}
	for i < len(s.src) && !s.result.Exceeded {
		f := s.top()
		switch {
		case f.code():
			i = s.code(i)
		case f.kind == kindQuoted:
			i = s.quoted(i)
		default:
			i = s.heredoc(i)
		}
	}
}

// code reads one token of code at i and returns where the next one starts.
func (s *scanner) code(i int) int {
	src := s.src
	c := src[i]
	next := byte(0)
	if i+1 < len(src) {
		next = src[i+1]
	}
	switch c {
	case ' ', '\t', '\r', '\n':
		return i + 1
	case '#':
		return s.lineComment(i)
	case '/':
		if next == '/' {
			return s.lineComment(i)
		}
		if next == '*' {
			if end, ok := s.blockComment(i); ok {
				return end
			}
		}
	}

	// A real token. The first one of a %{ sequence is its keyword.
	if f := s.top(); f.directive {
		f.directive = false
		if identStart(c) {
			end, ident := s.token(i, false)
			if ident {
				s.keyword(i, src[i:end])
			}
			s.afterTerm = ident
			return end
		}
	}

	switch c {
	case '"':
		s.push(i, frame{kind: kindQuoted})
		return i + 1
	case '{':
		s.afterTerm = false
		s.push(i, frame{kind: kindBrace})
		return i + 1
	case '}':
		s.closeBrace()
		return i + 1
	case '~':
		if next == '}' {
			s.closeBrace()
			return i + 2
		}
		return i + 1
	case '(', '[':
		if s.afterTerm {
			s.op(i)
		}
		s.afterTerm = false
		k := kindParen
		if c == '[' {
			k = kindBracket
		}
		s.push(i, frame{kind: k})
		return i + 1
	case ')', ']':
		want := kindParen
		if c == ']' {
			want = kindBracket
		}
		// A closing bracket of another kind is a syntax error; leaving the
		// frame open errs on the high side.
		if s.top().kind == want {
			s.popTo(len(s.stack) - 1)
		}
		s.afterTerm = true
		return i + 1
	case ',':
		s.endExpression()
		return i + 1
	case '=':
		switch next {
		case '=':
			s.op(i)
			return i + 2
		case '>':
			s.afterTerm = false
			return i + 2
		}
		s.endExpression()
		return i + 1
	case '!', '>':
		s.op(i)
		if next == '=' {
			return i + 2
		}
		return i + 1
	case '<':
		if next == '<' {
			if end, marker, ok := s.heredocIntro(i); ok {
				s.push(i, frame{kind: kindHeredoc, marker: marker, lineStart: true})
				return end
			}
		}
		s.op(i)
		if next == '=' {
			return i + 2
		}
		return i + 1
	case '&', '|':
		if next == c {
			s.op(i)
			return i + 2
		}
		s.afterTerm = false
		return i + 1
	case '+', '-', '*', '/', '%', '?':
		s.op(i)
		return i + 1
	case ':':
		s.afterTerm = false
		return i + 1
	case '.':
		return i + 1
	}
	if isDigit(c) {
		s.afterTerm = true
		return numberEnd(src, i)
	}
	if identStart(c) {
		end, ident := s.token(i, false)
		s.afterTerm = ident
		return end
	}
	s.afterTerm = false
	return i + 1
}

// token returns where the code token starting at i, a letter, _ or the
// first byte of a multi-byte character, ends, and whether it is an
// identifier. Identifiers of letters, digits and well-formed multi-byte
// characters are read here (a character that is not a letter may end the
// lexer's identifier where this one goes on, but no byte of structure
// hides in it). Where a malformed byte sequence is involved, or where exact
// is asked for (a heredoc's marker), hclsyntax's lexer is asked instead:
// its tables take some malformed sequences for letters, so that an
// identifier may swallow a following quote or bracket, and a scan that
// disagreed with it there could mistake code for text.
func (s *scanner) token(i int, exact bool) (end int, ident bool) {
	src := s.src
	k, multiByte, malformed := i, false, false
	for k < len(src) {
		c := src[k]
		if asciiIdentByte(c) {
			k++
			continue
		}
		if c < utf8.RuneSelf {
			break
		}
		r, n := utf8.DecodeRune(src[k:])
		if r == utf8.RuneError && n == 1 {
			malformed = true
			break
		}
		k, multiByte = k+n, true
	}
	if !malformed && !(exact && multiByte) {
		return k, true
	}
	for w := 12; ; w *= 2 {
		stop := min(i+w, len(src))
		// A leading space keeps the lexer from taking a byte order mark
		// here for the start of a file.
		s.buf = append(append(s.buf[:0], ' '), src[i:stop]...)
		tokens, _ := hclsyntax.LexConfig(s.buf, "", hcl.InitialPos)
		t := tokens[0]
		n := t.Range.End.Byte - 1
		// Away from the window's end (a character is at most 4 bytes) the
		// lexer has seen all it needs to end the token where it did.
		if stop == len(src) || n < stop-i-utf8.UTFMax {
			return i + max(n, 1), t.Type == hclsyntax.TokenIdent
		}
	}
}

// keyword reads the keyword of a %{ directive: if and for open a block of
// the template the sequence is in, endif and endfor close one.
func (s *scanner) keyword(at int, word []byte) {
	tmpl := &s.stack[len(s.stack)-2]
	switch string(word) {
	case "if", "for":
		tmpl.blocks++
		s.add(at, 1, 1)
	case "endif", "endfor":
		if tmpl.blocks > 0 {
			tmpl.blocks--
			s.depth--
			s.structure--
		}
	}
}

// closeBrace is } (or ~}) in code. Like hclsyntax's lexer it closes the
// innermost { or template sequence, whichever is nearer; brackets left open
// inside it are abandoned, as the parser abandons them.
func (s *scanner) closeBrace() {
	for k := len(s.stack) - 1; k > 0; k-- {
		if s.stack[k].kind == kindBrace || s.stack[k].kind == kindSeq {
			s.popTo(k)
			s.afterTerm = true
			return
		}
	}
	// A } that closes nothing: a syntax error, and no change of mode.
}

// lineComment skips a # or // comment with the newline that ends it.
func (s *scanner) lineComment(i int) int {
	if n := bytes.IndexByte(s.src[i:], '\n'); n >= 0 {
		return i + n + 1
	}
	return len(s.src)
}

// blockComment skips a /* */ comment. Without a closing */ it is not a
// comment at all: the lexer reads / and * as operators then.
func (s *scanner) blockComment(i int) (int, bool) {
	if s.lastBlockClose == -2 {
		s.lastBlockClose = bytes.LastIndex(s.src, []byte("*/"))
	}
	if s.lastBlockClose < i+2 {
		return 0, false
	}
	n := bytes.Index(s.src[i+2:], []byte("*/"))
	return i + 2 + n + 2, true
}

// quoted reads a quoted string's text at i.
func (s *scanner) quoted(i int) int {
	switch s.src[i] {
	case '"':
		s.popTo(len(s.stack) - 1)
		s.afterTerm = true
		return i + 1
	case '\\':
		// An escape takes the next character, unless that ends the line.
		if i+1 < len(s.src) && s.src[i+1] != '\n' && s.src[i+1] != '\r' {
			return i + 2
		}
		return i + 1
	case '$', '%':
		return s.sequence(i)
	}
	return i + 1
}

// sequence reads $ or % in a template: ${ or %{ opens a template sequence,
// $${ and %%{ are the literal text ${ and %{.
func (s *scanner) sequence(i int) int {
	src, c := s.src, s.src[i]
	if i+1 < len(src) && src[i+1] == '{' {
		end := i + 2
		if end < len(src) && src[end] == '~' {
			end++
		}
		s.afterTerm = false
		s.push(i, frame{kind: kindSeq, directive: c == '%'})
		return end
	}
	if i+2 < len(src) && src[i+1] == c && src[i+2] == '{' {
		return i + 3
	}
	return i + 1
}

// heredoc reads a heredoc's text at i.
func (s *scanner) heredoc(i int) int {
	src, f := s.src, s.top()
	if f.lineStart {
		f.lineStart = false
		// A line that holds only the marker (and white space) closes it;
		// the newline after the marker is code again.
		if n := bytes.IndexByte(src[i:], '\n'); n >= 0 && bytes.Equal(bytes.TrimSpace(src[i:i+n+1]), f.marker) {
			s.popTo(len(s.stack) - 1)
			s.afterTerm = true
			return i + n
		}
	}
	switch src[i] {
	case '\n':
		f.lineStart = true
	case '$', '%':
		return s.sequence(i)
	}
	return i + 1
}

// heredocIntro recognises <<MARKER or <<-MARKER followed directly by a
// newline at i, and returns where the heredoc's first line starts.
func (s *scanner) heredocIntro(i int) (end int, marker []byte, ok bool) {
	src := s.src
	j := i + 2
	if j < len(src) && src[j] == '-' {
		j++
	}
	if j >= len(src) || !identStart(src[j]) {
		return 0, nil, false
	}
	k, ident := s.token(j, true)
	if !ident || k >= len(src) {
		return 0, nil, false
	}
	nl := k
	if src[nl] == '\r' && nl+1 < len(src) {
		nl++
	}
	if src[nl] != '\n' {
		return 0, nil, false
	}
	// As the lexer does: the marker is all before the newline, less one \r.
	marker = src[j:nl]
	if n := len(marker); n > 0 && marker[n-1] == '\r' {
		marker = marker[:n-1]
	}
	return nl + 1, marker, true
}

// identStart reports whether a code token starting with c may be an
// identifier: a letter, _, or the first byte of a multi-byte character
// (other bytes above ASCII are each a token of their own to the lexer).
func identStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0xC2 && c <= 0xF4
}

func asciiIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '_' || c == '-'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// numberEnd skips a number literal: digits, a fraction, an exponent.
func numberEnd(src []byte, i int) int {
	at := func(k int) byte {
		if k < len(src) {
			return src[k]
		}
		return 0
	}
	for i < len(src) {
		c := src[i]
		switch {
		case isDigit(c):
			i++
		case c == '.' && isDigit(at(i+1)):
			i += 2
		case (c == 'e' || c == 'E') && isDigit(at(i+1)):
			i += 2
		case (c == 'e' || c == 'E') && (at(i+1) == '+' || at(i+1) == '-') && isDigit(at(i+2)):
			i += 3
		default:
			return i
		}
	}
	return i
}
