package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// policyDir writes a policy directory for one test.
func policyDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644))
	}
	return dir
}

const shippedPolicy = "../../policy/default"

func TestPolicyTestShippedPolicyPasses(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "policy", "test", shippedPolicy)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Greater(t, len(lines), 10)
	for _, l := range lines[:len(lines)-1] {
		require.True(t, strings.HasPrefix(l, "PASS  data.taskerd.authz_test.test_"), l)
		require.Contains(t, l, filepath.Join(shippedPolicy, "authz_test.rego")+":")
	}
	require.Regexp(t, `^\d+ passed, 0 failed, 0 skipped$`, lines[len(lines)-1])
}

const smallPolicy = `package taskerd.authz

default allow := false

allow if "admin" in input.subject.roles

reasons contains "admins may do anything" if allow
`

func TestPolicyTestReportsFailures(t *testing.T) {
	t.Parallel()
	dir := policyDir(t, map[string]string{
		"authz.rego": smallPolicy,
		"authz_test.rego": `package taskerd.authz_test

import data.taskerd.authz

test_admin if authz.allow with input as {"subject": {"roles": ["admin"]}}

test_viewer_is_wrongly_expected_to_pass if authz.allow with input as {"subject": {"roles": ["viewer"]}}

test_errors if to_number("x") == 1

todo_test_later if false
`,
	})
	r := runCLI(t, "policy", "test", dir)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stdout, "PASS  data.taskerd.authz_test.test_admin  "+filepath.Join(dir, "authz_test.rego")+":5\n")
	require.Contains(t, r.stdout, "FAIL  data.taskerd.authz_test.test_viewer_is_wrongly_expected_to_pass  "+filepath.Join(dir, "authz_test.rego")+":7\n")
	require.Contains(t, r.stdout, "FAIL  data.taskerd.authz_test.test_errors  ")
	require.Contains(t, r.stdout, "to_number")
	require.Contains(t, r.stdout, "SKIP  data.taskerd.authz_test.todo_test_later")
	require.Contains(t, r.stdout, "1 passed, 2 failed, 1 skipped\n")
	require.Equal(t, "taskerd: 2 of 3 tests failed\n", r.stderr)
}

func TestPolicyTestWithoutTestsFails(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "policy", "test", policyDir(t, map[string]string{"authz.rego": smallPolicy}))
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "holds no Rego unit tests")
}

func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "policy", "check", shippedPolicy)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `ok: 2 files, revision [0-9a-f]{64}\n$`, r.stdout)

	dir := policyDir(t, map[string]string{
		"authz.rego": "package taskerd.authz\n\nallow if {\n\tx := input.subject.id\n\t\"admin\" in input.subject.roles\n}\n",
		"more.rego":  "package taskerd.authz\n\nreasons contains r if { r := \"a\"\n",
	})
	r = runCLI(t, "policy", "check", dir)
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, filepath.Join(dir, "more.rego")+":4:0: rego_parse_error")
	require.Contains(t, r.stderr, "taskerd: policy does not compile: 1 error\n")

	// Once it parses, strict mode reports the unused variable.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "more.rego"), []byte("package taskerd.authz\n"), 0o644))
	r = runCLI(t, "policy", "check", dir)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, filepath.Join(dir, "authz.rego")+":4:2: rego_compile_error: assigned var x unused")

	r = runCLI(t, "policy", "check", policyDir(t, map[string]string{"lib.rego": "package taskerd.lib\n\nhelper := 1\n"}))
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "no rule defines data.taskerd.authz.allow")

	r = runCLI(t, "policy", "check", t.TempDir())
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "no *.rego policy files")

	r = runCLI(t, "policy", "check")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "check needs one policy directory")
}

func TestPolicyEval(t *testing.T) {
	t.Parallel()
	input := func(roles, action, namespace string) string {
		return writeFile(t, "input.json", `{"subject": {"id": "oscar", "roles": `+roles+`, "claims": {"namespaces": ["ecommerce"]}},
 "action": "`+action+`",
 "resource": {"type": "task", "namespace": "`+namespace+`", "workflow": "", "version": "", "task_id": 42, "step": ""},
 "request": {"method": "POST", "path": "/v1/tasks/42/cancel", "remote_addr": "10.0.0.7:51234"}}`)
	}

	r := runCLI(t, "policy", "eval", "--input", input(`["operator"]`, "task:cancel", "ecommerce"))
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
	require.Regexp(t, `^allow\nreason: operator may do task, step and schedule actions in its namespaces\nrevision: [0-9a-f]{64}\n$`, r.stdout)

	r = runCLI(t, "policy", "eval", "--input", input(`["operator"]`, "task:cancel", "payroll"))
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stderr)
	require.Contains(t, r.stdout, "deny\nreason: no rule of the default policy allows task:cancel on namespace \"payroll\" for roles [\"operator\"]\n")

	dir := policyDir(t, map[string]string{"authz.rego": smallPolicy})
	r = runCLI(t, "policy", "eval", "--dir", dir, "--input", input(`["admin"]`, "task:cancel", "payroll"))
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "allow\nreason: admins may do anything\n")

	// Fail closed: an evaluation error is a deny, with its cause on stderr.
	broken := policyDir(t, map[string]string{"authz.rego": "package taskerd.authz\n\nallow if to_number(input.subject.id) > 1\n"})
	r = runCLI(t, "policy", "eval", "--dir", broken, "--input", input(`["admin"]`, "task:show", "x"))
	require.Equal(t, 1, r.code)
	require.True(t, strings.HasPrefix(r.stdout, "deny\n"), r.stdout)
	require.Contains(t, r.stderr, "denied because the policy failed")
	require.Contains(t, r.stderr, "to_number")

	r = runCLI(t, "policy", "eval", "--input", writeFile(t, "bad.json", `[1, 2]`))
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "must be a JSON object")

	r = runCLI(t, "policy", "eval", "--input", filepath.Join(t.TempDir(), "missing.json"))
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "cannot read the input document")

	r = runCLI(t, "policy", "eval")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "needs --input")

	r = runCLI(t, "policy", "eval", "--dir", policyDir(t, map[string]string{"authz.rego": "package taskerd.authz\n\nallow if {\n"}), "--input", input(`["admin"]`, "task:show", "x"))
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "rego_parse_error")
}
