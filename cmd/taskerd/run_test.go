package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const orderContext = `{"order_id": "A-1", "customer_email": "a@example.com", "items": [{"sku": "X", "quantity": 1}]}`

// schemaHCL is a workflow with a context schema and built-in handlers only.
const schemaHCL = `workflow "schema" {
  namespace = "ecommerce"
  version   = "1.0.0"
  context_schema = {
    type     = "object"
    required = ["order_id", "customer_email", "items"]
    properties = {
      order_id = { type = "string" }
    }
  }
  step "validate" { handler = "builtin.echo" }
}
`

// decodeReport reads run's --json document.
func decodeReport(t *testing.T, out string) runReport {
	t.Helper()
	var r runReport
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	return r
}

func stepsByName(r runReport) map[string]stepReport {
	m := map[string]stepReport{}
	for _, s := range r.Steps {
		m[s.Name] = s
	}
	return m
}

func tempDB(t *testing.T) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "taskerd.db") + "?synchronous=normal"
}

// The shipped order_fulfillment workflow runs through the example orders
// plugin, the way scripts/order-fulfillment.sh runs it on a fresh machine:
// build taskerd and the plugins, write the config with their hashes, run.
func TestRunOrderFulfillment(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("sh", "../../scripts/order-fulfillment.sh", "--json")
	cmd.Env = append(os.Environ(), "TASKERD_WORK="+t.TempDir())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	// plugins list comes first, then the --json report.
	out := stdout.String()
	require.Contains(t, out[:strings.Index(out, "{")], "orders  step_handler")
	rep := decodeReport(t, out[strings.Index(out, "{"):])
	require.Equal(t, "ecommerce/order_fulfillment@1.0.0", rep.Workflow)
	require.Equal(t, "complete", rep.Status)
	require.Equal(t, "all_complete", rep.ExecutionStatus)
	require.Equal(t, "healthy", rep.HealthStatus)
	require.Equal(t, 100.0, rep.CompletionPercentage)
	var names []string
	for _, s := range rep.Steps {
		names = append(names, s.Name)
		require.Equal(t, "complete", s.Status)
		require.Equal(t, 1, s.Attempts)
		require.NotNil(t, s.StartedAt)
		require.NotNil(t, s.CompletedAt)
	}
	require.Equal(t, []string{"validate_order", "reserve_inventory", "process_payment", "ship_order", "send_confirmation"}, names,
		"steps in topological order")
	require.Equal(t, 5, stepsByName(rep)["process_payment"].RetryLimit)
}

// flakyHCL: b fails once then succeeds, c (after b) fails until it is
// blocked. c runs after b so that the outcome does not depend on timing: had
// c exhausted its retries while b still waited for its backoff, the task
// would rightly be blocked by both (SEMANTICS §4: nothing ready or running,
// something blocked).
const flakyHCL = `workflow "flaky" {
  retry {
    base = "5ms"
    max  = "20ms"
  }
  step "a" { handler = "builtin.noop" }
  step "b" {
    handler    = "builtin.fail"
    depends_on = [step.a]
    config     = { times = 1, message = "card declined" }
  }
  step "c" {
    handler    = "builtin.fail"
    depends_on = [step.b]
    config     = { message = "always" }
    retry { limit = 2 }
  }
}
`

func TestRunProgressLinesAndBlockedTask(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "flaky.hcl", flakyHCL)
	r := runCLI(t, "run", path, "--db", tempDB(t))
	require.Equal(t, 1, r.code, "a task that ends in error exits 1: %s", r.stderr)
	require.Contains(t, r.stdout, "task 1 created: default/flaky@0.1.0, 3 steps\n")
	require.Contains(t, r.stdout, "  a  started (attempt 1/3)\n")
	require.Regexp(t, `  a  completed in \d+ ms\n`, r.stdout)
	require.Contains(t, r.stdout, "  b  failed: card declined — retry 2/3 in 10ms\n", "backoff(1) = 5ms * 2")
	require.Contains(t, r.stdout, "  c  failed: always — retry 2/2 in 10ms\n")
	require.Contains(t, r.stdout, "  c  failed: always — blocked after 2 of 2 attempts\n")
	require.Contains(t, r.stdout, "task 1 failed: blocked by c\n")
	require.Contains(t, r.stdout, "default/flaky@0.1.0: error (blocked_by_failures, blocked, 66.67% complete)\n")
}

func TestRunJSONForABlockedTask(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "flaky.hcl", flakyHCL)
	r := runCLI(t, "run", path, "--db", tempDB(t), "--json")
	require.Equal(t, 1, r.code, r.stderr)
	rep := decodeReport(t, r.stdout)
	require.Equal(t, "error", rep.Status)
	require.Equal(t, "blocked_by_failures", rep.ExecutionStatus)
	steps := stepsByName(rep)
	require.Equal(t, "complete", steps["b"].Status)
	require.Equal(t, 2, steps["b"].Attempts)
	require.Equal(t, "error", steps["c"].Status)
	require.Equal(t, 2, steps["c"].Attempts)
	require.JSONEq(t, `{"message": "always", "retryable": true, "kind": "handler_error"}`, string(steps["c"].Error))
}

func TestRunBadInputExits2(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	cases := []struct {
		args   []string
		stderr string
	}{
		{[]string{"run", "../../workflows/", "-w", "ecommerce/nope", "--db", db}, "unknown workflow ecommerce/nope"},
		{[]string{"run", writeFile(t, "schema.hcl", schemaHCL), "--db", db, "--context", `{"order_id": 5}`},
			"the context does not match ecommerce/schema@1.0.0's context_schema: /: missing properties 'customer_email', 'items'; /order_id: got number, want string"},
		{[]string{"run", "../../workflows/linear.hcl", "--db", db, "--context", `{"x":`}, "--context must be a JSON object"},
		{[]string{"run", "../../workflows/linear.hcl", "--db", db, "--context", `[1]`}, "--context must be a JSON object"},
		{[]string{"run", "../../workflows/linear.hcl", "--db", db, "--context", "@/does/not/exist.json"}, "--context: open /does/not/exist.json"},
		{[]string{"run", "../../workflows/linear.hcl", "--db", "mysql://x"}, `--db "mysql://x": want postgres://USER@HOST:PORT/DB, sqlite:PATH`},
		{[]string{"run", "../../workflows/linear.hcl", "--db", "postgres://u:secret@h:port/db"}, "--db: postgres DSN postgres://u:xxxxx@h:port/db: cannot be parsed"},
		{[]string{"migrate", "--db", "postgresql://u:secret@h:port/db"}, "--db: postgres DSN postgresql://u:xxxxx@h:port/db: cannot be parsed"},
		{[]string{"migrate", "--db", "mysql://x"}, `--db "mysql://x": want postgres://`},
		{[]string{"run", "../../workflows/linear.hcl", "--db", db, "--workers", "0"}, "--workers must be at least 1"},
		{[]string{"resume", "99", "--db", db}, "task 99 does not exist"},
		{[]string{"resume", "abc", "--db", db}, `TASK_ID must be a positive whole number, not "abc"`},
		{[]string{"resume", "--db", db}, "resume takes one TASK_ID"},
	}
	pluginWF := writeFile(t, "plugin.hcl", `workflow "pay" {
  step "charge" {
    handler = "payments.charge"
  }
}`)
	cases = append(cases, struct {
		args   []string
		stderr string
	}{[]string{"run", pluginWF, "--db", db}, pluginWF + `:3:15: step "charge" of default/pay@0.1.0 uses handler payments.charge, but no plugin "payments" is loaded (available: builtin.echo, builtin.fail, builtin.noop, builtin.sleep)`})
	for _, tc := range cases {
		r := runCLI(t, tc.args...)
		require.Equal(t, 2, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.stderr, "%v", tc.args)
		require.NotContains(t, r.stderr, "secret", "a password never reaches the output")
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one readable line: %q", r.stderr)
	}
}

func TestRunContextFromFile(t *testing.T) {
	t.Parallel()
	ctxFile := writeFile(t, "ctx.json", orderContext)
	r := runCLI(t, "run", writeFile(t, "schema.hcl", schemaHCL), "--context", "@"+ctxFile, "--db", tempDB(t), "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "complete", decodeReport(t, r.stdout).Status)
}

// buildTaskerd returns the CLI compiled for tests that need a real
// process: built once per test binary (as testPlugin is), since some thirty
// tests each linking their own copy cost the package a minute.
func buildTaskerd(t *testing.T) string {
	t.Helper()
	bin, err := taskerdBinary()
	require.NoError(t, err)
	return bin
}

var taskerdBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "taskerd-cli-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "taskerd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building taskerd: %v\n%s", err, out)
	}
	return bin, nil
})

// startRun starts `taskerd run` as a process and returns it with a reader of
// its stdout lines.
func startRun(t *testing.T, bin string, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, bufio.NewScanner(stdout)
}

// waitForLine reads lines until one has the words of want (whatever the
// padding between them), failing after a deadline.
func waitForLine(t *testing.T, lines *bufio.Scanner, want string) {
	t.Helper()
	wantWords := strings.Join(strings.Fields(want), " ")
	found := make(chan bool, 1)
	go func() {
		for lines.Scan() {
			if strings.Join(strings.Fields(lines.Text()), " ") == wantWords {
				found <- true
				// Keep draining so the process never blocks on a full pipe.
				for lines.Scan() {
				}
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		require.True(t, ok, "the process ended without printing %q", want)
	case <-time.After(30 * time.Second):
		t.Fatalf("no line %q within 30s", want)
	}
}

const slowHCL = `workflow "slow" {
  retry {
    base = "10ms"
    max  = "50ms"
  }
  step "first" { handler = "builtin.noop" }
  step "nap" {
    handler    = "builtin.sleep"
    depends_on = [step.first]
    config     = { duration = "%s" }
  }
  step "last" {
    handler    = "builtin.noop"
    depends_on = [step.nap]
  }
}
`

// A process killed with SIGKILL while a step runs loses nothing: resume
// recovers the step once its lease expires, counts the killed attempt, and
// does not run completed steps again.
func TestCrashThenResume(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	path := writeFile(t, "slow.hcl", strings.Replace(slowHCL, "%s", "1500ms", 1))
	db := "sqlite:" + filepath.Join(t.TempDir(), "crash.db")

	cmd, lines := startRun(t, bin, "run", path, "--db", db, "--lease", "1s")
	waitForLine(t, lines, "nap  started (attempt 1/3)")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	r := runCLI(t, "resume", "1", "--db", db, "--lease", "1s", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	rep := decodeReport(t, r.stdout)
	require.Equal(t, "complete", rep.Status)
	steps := stepsByName(rep)
	require.Equal(t, 1, steps["first"].Attempts, "a completed step is not run again")
	require.Equal(t, 2, steps["nap"].Attempts, "the killed attempt counts")
	var napErr struct{ Kind string }
	require.NoError(t, json.Unmarshal(steps["nap"].Error, &napErr))
	require.Equal(t, "lease_expired", napErr.Kind, "the killed attempt was recovered as lease_expired")
	require.Equal(t, "complete", steps["nap"].Status)
	require.Equal(t, 1, steps["last"].Attempts)
}

// Ctrl-C cancels the task cleanly: the running step is told to stop, every
// unfinished step becomes cancelled, and the exit code is 1.
func TestInterruptCancelsTheTask(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	path := writeFile(t, "slow.hcl", strings.Replace(slowHCL, "%s", "60s", 1))
	db := "sqlite:" + filepath.Join(t.TempDir(), "int.db")

	cmd, lines := startRun(t, bin, "run", path, "--db", db)
	waitForLine(t, lines, "nap  started (attempt 1/3)")
	start := time.Now()
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	err := cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 1, exit.ExitCode())
	require.Less(t, time.Since(start), 30*time.Second, "the 60s sleep was interrupted, not waited out")

	r := runCLI(t, "resume", "1", "--db", db, "--json")
	require.Equal(t, 1, r.code, "a cancelled task stays cancelled: %s", r.stderr)
	rep := decodeReport(t, r.stdout)
	require.Equal(t, "cancelled", rep.Status)
	steps := stepsByName(rep)
	require.Equal(t, "complete", steps["first"].Status)
	require.Equal(t, "cancelled", steps["nap"].Status)
	require.Equal(t, "cancelled", steps["last"].Status)
}
