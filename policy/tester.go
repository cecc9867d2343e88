package policy

import (
	"context"
	"fmt"
	"sort"

	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is the outcome of one Rego unit test (a rule named test_*).
type TestResult struct {
	Name     string // package.rule, e.g. data.taskerd.authz_test.test_admin
	Location string // file:line
	Pass     bool
	Skip     bool   // todo_test_*: reported, never run
	Message  string // why it did not pass: an error, or "" for a plain failure
}

// Test runs the Rego unit tests of a directory with OPA's tester, after a
// strict compile of every *.rego file (tests included). Built-in errors
// raised by a test fail it. A *CompileError means nothing ran.
func Test(ctx context.Context, dir string) ([]TestResult, error) {
	src, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	return runTests(ctx, src)
}

// TestDefault runs the unit tests shipped with the default policy.
func TestDefault(ctx context.Context) ([]TestResult, error) {
	src, err := readSource(defaultFS, "default", "")
	if err != nil {
		return nil, err
	}
	return runTests(ctx, src)
}

func runTests(ctx context.Context, src *source) ([]TestResult, error) {
	modules, err := src.parse(true)
	if err != nil {
		return nil, err
	}
	// Compile once on our strict compiler first, so that compile errors come
	// back as a *CompileError with file:line like everywhere else. The
	// tester then compiles a fresh copy with its own stages added.
	if _, err := src.compile(true); err != nil {
		return nil, err
	}
	ch, err := tester.NewRunner().
		SetCompiler(newCompiler().WithEnablePrintStatements(true)).
		SetModules(modules).
		RaiseBuiltinErrors(true).
		RunTests(ctx, nil)
	if err != nil {
		return nil, compileError(err)
	}
	var out []TestResult
	for r := range ch {
		tr := TestResult{Name: r.Package + "." + r.Name, Pass: r.Pass(), Skip: r.Skip}
		if r.Location != nil {
			tr.Location = fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
		}
		if r.Error != nil {
			tr.Message = r.Error.Error()
		}
		out = append(out, tr)
	}
	// Results arrive in completion order; report them in a stable one.
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
