package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// source is the Rego files of one policy, read at one instant.
type source struct {
	// files maps the name used in messages (the path on disk, or
	// "default/NAME.rego" for the embedded policy) to the file's text.
	files map[string]string
	// rel maps the same names to the path relative to the policy root,
	// which is what the revision hashes.
	rel map[string]string
}

// ErrNoPolicy is returned for a directory that holds no *.rego file.
var ErrNoPolicy = errors.New("no *.rego policy files")

// readSource reads every *.rego file under root in fsys, recursively,
// skipping hidden files and directories (editors' swap and lock files).
// prefix is joined to each file's path for messages.
func readSource(fsys fs.FS, root, prefix string) (*source, error) {
	src := &source{files: map[string]string{}, rel: map[string]string{}}
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if p != root && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(name, ".rego") {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		name = filepath.Join(prefix, filepath.FromSlash(p))
		src.files[name] = string(b)
		rel := p
		if root != "." {
			rel = strings.TrimPrefix(p, root+"/")
		}
		src.rel[name] = rel
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(src.files) == 0 {
		return nil, fmt.Errorf("%s: %w", filepath.Join(prefix, root), ErrNoPolicy)
	}
	return src, nil
}

// readDir reads the *.rego files of a directory on disk.
func readDir(dir string) (*source, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	return readSource(os.DirFS(dir), ".", dir)
}

// isTest reports whether a file holds Rego unit tests, which the tester runs
// and the decision engine leaves out.
func isTest(name string) bool {
	return strings.HasSuffix(name, "_test.rego")
}

// names returns the file names, sorted, with or without test files.
func (s *source) names(withTests bool) []string {
	var out []string
	for name := range s.files {
		if withTests || !isTest(name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// revision identifies the policy a decision came from: SHA-256 over the
// sorted paths (relative to the policy root, so that nodes reading the same
// files from different directories agree) and contents of the files that
// decide, test files excluded.
func (s *source) revision() string {
	h := sha256.New()
	var n [8]byte
	for _, name := range s.names(false) {
		// Length-prefix both parts so that no two different file sets can
		// produce the same byte stream.
		for _, part := range []string{s.rel[name], s.files[name]} {
			binary.BigEndian.PutUint64(n[:], uint64(len(part)))
			h.Write(n[:])
			h.Write([]byte(part))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Problem is one compile error, with its place.
type Problem struct {
	File    string
	Line    int
	Col     int
	Message string
}

func (p Problem) String() string {
	if p.File == "" {
		return p.Message
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Message)
}

// CompileError is a policy that does not parse or compile (strict mode).
type CompileError struct {
	Problems []Problem
}

func (e *CompileError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return fmt.Sprintf("policy does not compile (%d %s):\n%s", len(lines), pluralProblem(len(lines)), strings.Join(lines, "\n"))
}

func pluralProblem(n int) string {
	if n == 1 {
		return "error"
	}
	return "errors"
}

func compileError(err error) error {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return &CompileError{Problems: []Problem{{Message: err.Error()}}}
	}
	errs.Sort()
	ce := &CompileError{}
	for _, e := range errs {
		p := Problem{Message: e.Code + ": " + e.Message}
		if e.Location != nil {
			p.File, p.Line, p.Col = e.Location.File, e.Location.Row, e.Location.Col
		}
		ce.Problems = append(ce.Problems, p)
	}
	return ce
}

// parse parses the files (Rego v1 only) into modules keyed by file name.
func (s *source) parse(withTests bool) (map[string]*ast.Module, error) {
	modules := map[string]*ast.Module{}
	var errs ast.Errors
	for _, name := range s.names(withTests) {
		m, err := ast.ParseModuleWithOpts(name, s.files[name], ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			var perrs ast.Errors
			if errors.As(err, &perrs) {
				errs = append(errs, perrs...)
				continue
			}
			return nil, compileError(err)
		}
		modules[name] = m
	}
	if len(errs) > 0 {
		return nil, compileError(errs)
	}
	return modules, nil
}

// newCompiler is the compiler every policy goes through: strict mode, so
// unused variables, shadowed input and deprecated built-ins are errors.
func newCompiler() *ast.Compiler {
	return ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1)
}

// compile parses and compiles the files in strict mode.
func (s *source) compile(withTests bool) (*ast.Compiler, error) {
	modules, err := s.parse(withTests)
	if err != nil {
		return nil, err
	}
	c := newCompiler()
	if c.Compile(modules); c.Failed() {
		return nil, compileError(c.Errors)
	}
	return c, nil
}

// ErrNoAllowRule is returned by Check for a policy whose files (tests
// aside) define no data.taskerd.authz.allow: it would deny every request.
var ErrNoAllowRule = errors.New("no rule defines data.taskerd.authz.allow, so every request would be denied")

var allowRef = ast.MustParseRef("data.taskerd.authz.allow")

// CheckResult describes a policy that compiles.
type CheckResult struct {
	Revision string   // as in the decision log
	Files    []string // every *.rego file, tests included
}

// Check compiles every *.rego file of dir, unit tests included, in strict
// mode, as taskerd policy check does. A *CompileError lists each problem with
// its file:line:col; ErrNoAllowRule means it compiles but cannot allow.
func Check(dir string) (CheckResult, error) {
	src, err := readDir(dir)
	if err != nil {
		return CheckResult{}, err
	}
	if _, err := src.compile(true); err != nil {
		return CheckResult{}, err
	}
	c, err := src.compile(false)
	if err != nil {
		return CheckResult{}, err
	}
	res := CheckResult{Revision: src.revision(), Files: src.names(true)}
	if len(c.GetRulesExact(allowRef)) == 0 {
		return res, ErrNoAllowRule
	}
	return res, nil
}
