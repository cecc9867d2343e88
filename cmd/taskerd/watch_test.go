package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// watchHCL: "retried" fails once and is retried after a 1s backoff (base
// 500ms, doubled after the first failure), long enough for a poll to see it
// waiting; "blocked" fails for good.
const watchHCL = `workflow "retried" {
  retry { base = "500ms" }
  step "a" {
    handler = "builtin.sleep"
    config  = { duration = "300ms" }
  }
  step "charge" {
    handler    = "builtin.fail"
    depends_on = [step.a]
    config     = { times = 1, message = "card declined" }
  }
  step "c" {
    handler    = "builtin.noop"
    depends_on = [step.charge]
  }
}

workflow "slow" {
  step "long" {
    handler = "builtin.sleep"
    config  = { duration = "1m" }
  }
}

workflow "blocked" {
  step "a" { handler = "builtin.noop" }
  step "ship" {
    handler    = "builtin.fail"
    depends_on = [step.a]
    retryable  = false
    config     = { message = "no carrier\nfor this address" }
  }
}
`

func TestTaskWatch(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "watch.hcl"), []byte(watchHCL), 0o644))
	s := startServe(t, bin, "--db", tempDB(t), "--workflows", dir)
	watch := func(id int64, args ...string) result {
		return runBin(t, bin, nil, append([]string{"task", "watch", fmt.Sprint(id), "--server", s.url, "--interval", "50ms"}, args...)...)
	}

	// A task whose step is retried: its progression, a line per change, and
	// exit 0. Not a terminal: plain lines whatever the flags.
	id := createTask(t, s, "default/retried")
	r := watch(id)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stderr)
	assert.NotContains(t, r.stdout, "\x1b", "no control sequence off a terminal")
	stamp := `(?m)^\d\d:\d\d:\d\d `
	for _, want := range []string{
		// Step a may be done by the time watch's first answer comes (it
		// sleeps 300ms, and a loaded machine starts a process slowly).
		stamp + fmt.Sprintf(`task %d default/retried@0\.1\.0 (pending|in_progress) \([01]/3 steps done\)$`, id),
		stamp + `step a complete attempt 1/3 after 0\.\ds$`,
		stamp + `step charge error attempt 1/3 after \d+\.\ds — retry in [12]s \(handler_error\): card declined$`,
		stamp + `step charge complete attempt 2/3 after \d+\.\ds$`,
		stamp + `step c complete attempt 1/3 after \d+\.\ds$`,
		stamp + fmt.Sprintf(`task %d default/retried@0\.1\.0 complete \(3/3 steps done\)\n\z`, id),
	} {
		assert.Regexp(t, want, r.stdout)
	}
	// In order: the failure comes before the retry's success.
	assert.Less(t, strings.Index(r.stdout, "step charge error"), strings.Index(r.stdout, "step charge complete"))
	assert.Equal(t, 1, strings.Count(r.stdout, "step charge error"), "a backoff counting down is not a change")

	// Watching a task that is over prints its state and exits at once;
	// --json prints the API's JSON of the task instead.
	r = watch(id, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var task struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
		Steps  []struct {
			Name string `json:"name"`
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &task), r.stdout)
	assert.Equal(t, id, task.ID)
	assert.Equal(t, "complete", task.Status)
	assert.Len(t, task.Steps, 3)

	// A task that ends blocked: exit 1 and one line naming the step, its
	// attempts, the error's kind and message.
	id = createTask(t, s, "default/blocked")
	r = watch(id)
	require.Equal(t, 1, r.code, r.stderr)
	assert.Regexp(t, `(?m)^\d\d:\d\d:\d\d step ship error attempt 1/3 after \d+\.\ds — blocked \(handler_error\): no carrier for this address$`, r.stdout)
	assert.Equal(t, fmt.Sprintf("taskerd: task %d is in error: step ship blocked after 1 of 3 attempts (handler_error): no carrier for this address\n", id), r.stderr)

	// A cancelled task: exit 1.
	code, _ := s.post(t, fmt.Sprintf("/v1/tasks/%d/cancel", id), map[string]any{"reason": "test"})
	require.Equal(t, 200, code)
	r = watch(id)
	require.Equal(t, 1, r.code)
	assert.Equal(t, fmt.Sprintf("taskerd: task %d was cancelled\n", id), r.stderr)

	// Bad input: exit 2, one line.
	for _, args := range [][]string{{"task", "watch", "999", "--server", s.url}, {"task", "watch", "x", "--server", s.url},
		{"task", "watch", "1", "--interval", "1ms", "--server", s.url}} {
		r = runBin(t, bin, nil, args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "%v: one line: %q", args, r.stderr)
	}
	// On a terminal: the view in place; Ctrl-C stops watching, shows the
	// cursor again and says so in one line, and the task goes on.
	id = createTask(t, s, "default/slow")
	out, code := runOnTerminalUntil(t, bin, []string{"NO_COLOR=1"}, "▸ long", "task", "watch", fmt.Sprint(id), "--server", s.url, "--interval", "50ms")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "\x1b[?25l")
	assert.Regexp(t, `▸ long  in_progress  1/3  \d+\.\ds`, out)
	assert.Contains(t, out, fmt.Sprintf("\x1b[?25htaskerd: stopped watching task %d; it goes on (taskerd task show %d)\r\n", id, id))
	s.waitStatus(t, id, "in_progress")

	r = runBin(t, bin, nil, "task", "watch", "1", "--server", "http://127.0.0.1:1")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "cannot reach taskerd at http://127.0.0.1:1")
}

// The live view on a terminal, end to end: run's output on a pseudo
// terminal redraws a frame in place (cursor up, clear line), hides the
// cursor and shows it again, colors the states, and its last frame is the
// task's final state. NO_COLOR drops the colors; --plain, the frame.
func TestRunLiveViewOnATerminal(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	wf := writeFile(t, "watch.hcl", watchHCL)

	out, code := runOnTerminal(t, bin, nil, "run", wf, "-w", "default/retried", "--db", tempDB(t))
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "task 1 created: default/retried@0.1.0, 3 steps\r\n")
	assert.True(t, strings.HasPrefix(out[strings.Index(out, "steps\r\n")+7:], "\x1b[?25l"), "the cursor is hidden as the view starts")
	assert.Regexp(t, `\x1b\[5A\r\x1b\[2K`, out, "later frames move up over the 5 lines of the one before and clear each")
	assert.Contains(t, out, "\x1b[?25h", "the cursor is shown again")
	assert.Contains(t, out, "\x1b[32mcomplete\x1b[0m", "states are colored")
	assert.Regexp(t, `retry in [12]s \(handler_error\): card declined`, out, "a frame showed the backoff")
	assert.NotContains(t, out, "started (attempt", "no progress lines on a terminal")
	// The last frame: everything complete, then run's summary.
	last := out[strings.LastIndex(out, "\x1b[2Ktask 1 "):]
	plain := regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`).ReplaceAllString(last, "")
	assert.Regexp(t, `^\r?task 1 default/retried@0\.1\.0  complete\r\n`+
		`\r  ✓ a       complete  1/3  0\.\ds\r\n`+
		`\r  ✓ charge  complete  2/3  \d+\.\ds\r\n`+
		`\r  ✓ c       complete  1/3  \d+\.\ds\r\n`+
		`\r\[████████████████████\] 3/3 steps done  100%\r\n`+
		`default/retried@0\.1\.0: complete \(all_complete, healthy, 100\.00% complete\)\r\n$`, plain)

	out, code = runOnTerminal(t, bin, []string{"NO_COLOR=1"}, "run", wf, "-w", "default/blocked", "--db", tempDB(t))
	require.Equal(t, 1, code, out)
	assert.Contains(t, out, "\x1b[4A", "still redrawn in place")
	assert.NotRegexp(t, `\x1b\[\d*m`, out, "no color with NO_COLOR")
	assert.Contains(t, out, "✗ ship  error     1/3  ")
	assert.Contains(t, out, "blocked (handler_error): no carrier for this address")

	out, code = runOnTerminal(t, bin, nil, "run", wf, "-w", "default/blocked", "--db", tempDB(t), "--plain")
	require.Equal(t, 1, code, out)
	assert.NotContains(t, out, "\x1b[", "--plain: the lines of a pipe")
	assert.Contains(t, out, "— blocked after 1 of 3 attempts")
}

// The API source rides out a server that cannot answer for its patience,
// giving the last state read with a note, and fails at once on an answer
// that will not change (a 404), or on no answer before the first.
func TestAPISourcePatience(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		status = http.StatusOK
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if status != http.StatusOK {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"error": {"code": "unavailable", "message": "the database does not answer"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"id": 4, "workflow": "d/x", "version": "1", "status": "in_progress",
			"steps": [{"name": "a", "status": "error", "attempts": 1, "retry_limit": 3,
			           "error": {"message": "boom", "kind": "handler_error", "retryable": true},
			           "readiness": {"permanently_blocked": false, "next_retry_at": "2030-01-01T00:00:00Z"}}]}`))
	}))
	defer ts.Close()
	setStatus := func(s int) { mu.Lock(); status = s; mu.Unlock() }
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &apiSource{c: &apiClient{server: ts.URL, http: ts.Client()}, path: "/v1/tasks/4", patience: 30 * time.Second,
		now: func() time.Time { return now }}
	ctx := context.Background()

	first, err := src.Snapshot(ctx)
	require.NoError(t, err)
	require.Equal(t, "d/x@1", first.Workflow)
	require.Len(t, first.Steps, 1)
	assert.Equal(t, "handler_error", first.Steps[0].ErrorKind)
	assert.Equal(t, "boom", first.Steps[0].ErrorMessage)
	require.NotNil(t, first.Steps[0].NextRetryAt)
	assert.False(t, first.Steps[0].Blocked)

	setStatus(http.StatusServiceUnavailable)
	now = now.Add(29 * time.Second)
	snap, err := src.Snapshot(ctx)
	require.NoError(t, err, "within its patience")
	assert.Equal(t, first.Steps, snap.Steps)
	assert.Contains(t, snap.Note, "no answer from the server since 00:00:00: retrying")
	assert.Contains(t, snap.Note, "503 unavailable")

	now = now.Add(time.Second)
	_, err = src.Snapshot(ctx)
	require.ErrorContains(t, err, "503 unavailable", "patience is over")

	setStatus(http.StatusOK)
	_, err = src.Snapshot(ctx)
	require.NoError(t, err)
	setStatus(http.StatusNotFound)
	_, err = src.Snapshot(ctx)
	var ee *exitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 2, ee.code, "a 404 is final")

	fresh := &apiSource{c: &apiClient{server: "http://127.0.0.1:1", http: ts.Client()}, path: "/v1/tasks/4", patience: time.Hour, now: time.Now}
	_, err = fresh.Snapshot(ctx)
	require.ErrorContains(t, err, "cannot reach taskerd", "no patience before a first answer")
}
