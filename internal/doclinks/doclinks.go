// Package doclinks checks the links of the repository's documentation:
// every relative link in a markdown file (README.md, docs/, the examples'
// READMEs) must point at a file or directory that exists, and every
// #anchor at a heading of the markdown file it names, as GitHub renders
// it.
//
// The documentation is markdown, not Go, and has no package of its own; the
// check is a Go test so that `go test ./...`, and so CI, runs it without any
// other tool. It is a package of its own because it belongs to none of the
// others: it reads files, never taskerd's code.
package doclinks

import (
	"bufio"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"
)

// Problem is one broken link.
type Problem struct {
	File   string // relative to the root, slash-separated
	Line   int
	Target string // the link as written
	Reason string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Target, p.Reason)
}

// Check reads every *.md file under root (skipping directories whose name
// starts with a dot, such as .git) and returns the links that do not
// resolve, sorted by file and line.
func Check(root string) ([]Problem, error) {
	files, err := markdownFiles(root)
	if err != nil {
		return nil, err
	}
	anchors := map[string]map[string]bool{} // slash path → anchors, read on demand
	anchorsOf := func(rel string) (map[string]bool, error) {
		if a, ok := anchors[rel]; ok {
			return a, nil
		}
		a, err := readAnchors(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		anchors[rel] = a
		return a, nil
	}

	var problems []Problem
	for _, rel := range files {
		ls, err := readLinks(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			bad := func(reason string) {
				problems = append(problems, Problem{File: rel, Line: l.line, Target: l.target, Reason: reason})
			}
			target, anchor, _ := strings.Cut(l.target, "#")
			dest := rel
			if target != "" {
				unescaped, err := url.PathUnescape(target)
				if err != nil {
					bad("not a valid path: " + err.Error())
					continue
				}
				if strings.HasPrefix(unescaped, "/") {
					dest = path.Clean(strings.TrimPrefix(unescaped, "/")) // GitHub: from the repository root
				} else {
					dest = path.Join(path.Dir(rel), unescaped)
				}
				if dest == ".." || strings.HasPrefix(dest, "../") {
					bad("points outside the repository")
					continue
				}
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(dest))); err != nil {
					bad("no such file or directory: " + dest)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(strings.ToLower(dest), ".md") {
				continue
			}
			a, err := anchorsOf(dest)
			if err != nil {
				return nil, err
			}
			if !a[anchor] {
				bad("no heading with anchor #" + anchor + " in " + dest)
			}
		}
	}
	sort.SliceStable(problems, func(i, j int) bool {
		if problems[i].File != problems[j].File {
			return problems[i].File < problems[j].File
		}
		return problems[i].Line < problems[j].Line
	})
	return problems, nil
}

func markdownFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Hidden directories, and npm's installs (node_modules: other
			// projects' pages, not ours).
			if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(strings.ToLower(d.Name()), ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	return files, err
}

type link struct {
	line   int
	target string
}

var (
	// [text](target) and ![alt](target), with an optional "title".
	inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	// [label]: target
	refDef   = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?`)
	scheme   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	codeSpan = regexp.MustCompile("`+[^`]*`+")
)

// readLinks returns the links of a markdown file that point into the
// repository (not those with a scheme, such as https: or mailto:), outside
// fenced code blocks and code spans.
func readLinks(file string) ([]link, error) {
	var links []link
	err := eachLine(file, func(n int, line string) {
		line = codeSpan.ReplaceAllString(line, "code")
		var targets []string
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			targets = append(targets, m[1])
		}
		if m := refDef.FindStringSubmatch(line); m != nil {
			targets = append(targets, m[1])
		}
		for _, t := range targets {
			if t == "" || scheme.MatchString(t) {
				continue
			}
			links = append(links, link{line: n, target: t})
		}
	})
	return links, err
}

var (
	atxHeading = regexp.MustCompile(`^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$`)
	htmlAnchor = regexp.MustCompile(`<a\s+(?:[^>]*\s)?(?:name|id)="([^"]+)"`)
)

// readAnchors returns the anchors GitHub gives a markdown file: one per
// heading (see Slug; a repeated heading gets -1, -2…), plus those of
// <a name="…"> or <a id="…"> tags.
func readAnchors(file string) (map[string]bool, error) {
	anchors := map[string]bool{}
	seen := map[string]int{}
	err := eachLine(file, func(_ int, line string) {
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			anchors[m[1]] = true
		}
		m := atxHeading.FindStringSubmatch(line)
		if m == nil {
			return
		}
		s := Slug(m[1])
		if n := seen[s]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			anchors[s] = true
		}
		seen[s]++
	})
	return anchors, err
}

var (
	mdLink  = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	htmlTag = regexp.MustCompile(`<[^>]+>`)
)

// Slug is the anchor GitHub gives a heading: its text as rendered (code
// spans, links and emphasis reduced to their text), lowercased, with every
// character that is not a letter, a digit, a space, - or _ dropped, and
// spaces turned into -.
func Slug(heading string) string {
	text := mdLink.ReplaceAllString(heading, "$1")
	text = htmlTag.ReplaceAllString(text, "")
	text = strings.NewReplacer("`", "", "*", "").Replace(text)
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// eachLine calls fn with every line of a markdown file that is outside a
// fenced code block (``` or ~~~), numbered from 1.
func eachLine(file string, fn func(n int, line string)) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	fence := "" // the fence that opened the current code block
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" ") == "" {
				fence = ""
			}
			continue
		}
		if f := fenceOf(trimmed); f != "" && len(line)-len(trimmed) <= 3 {
			fence = f
			continue
		}
		fn(n, line)
	}
	return sc.Err()
}

// fenceOf returns the opening fence of a code block (three or more ` or ~)
// at the start of a line, or "".
func fenceOf(s string) string {
	for _, c := range []string{"`", "~"} {
		n := len(s) - len(strings.TrimLeft(s, c))
		if n >= 3 {
			return strings.Repeat(c, n)
		}
	}
	return ""
}
