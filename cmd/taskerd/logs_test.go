package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const logsHCL = `
workflow "flaky" {
  namespace = "shop"
  retry {
    limit = 3
    base  = "50ms"
    max   = "50ms"
  }
  step "charge" {
    handler = "builtin.fail"
    config  = { times = 1, message = "card declined" }
  }
}

workflow "doomed" {
  namespace = "shop"
  retry {
    limit = 2
    base  = "20ms"
    max   = "20ms"
  }
  step "charge" {
    handler = "builtin.fail"
    config  = { message = "gateway down" }
  }
}
`

// jsonLines parses every line as a JSON object with the envelope of every
// log line (time, level, msg), failing on any other line.
func jsonLines(t *testing.T, lines []string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec), "a line that is not JSON: %q", l)
		for _, k := range []string{"time", "level", "msg"} {
			require.IsType(t, "", rec[k], "%s of %q", k, l)
		}
		out = append(out, rec)
	}
	return out
}

// withMsg returns the records whose msg is msg (and, if taskID > 0, whose
// task_id is taskID).
func withMsg(recs []map[string]any, msg string, taskID int64) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if r["msg"] == msg && (taskID == 0 || r["task_id"] == float64(taskID)) {
			out = append(out, r)
		}
	}
	return out
}

// requireNoNanoseconds fails on a number that looks like a duration in
// nanoseconds: no count, id or attempt of these lines comes near a
// million, while a nanosecond duration of a millisecond is one.
func requireNoNanoseconds(t *testing.T, recs []map[string]any) {
	t.Helper()
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case float64:
			require.Less(t, v, 1e6, "%s=%v looks like nanoseconds", key, v)
		case map[string]any:
			for k, x := range v {
				walk(key+"."+k, x)
			}
		}
	}
	for _, r := range recs {
		for k, v := range r {
			if k != "pid" {
				walk(k, v)
			}
		}
	}
}

func createTask(t *testing.T, s *served, workflow string) int64 {
	t.Helper()
	res, err := http.Post(s.url+"/v1/tasks", "application/json", strings.NewReader(fmt.Sprintf(`{"workflow": %q}`, workflow)))
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusCreated, res.StatusCode)
	var task struct {
		ID int64 `json:"id"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&task))
	require.Positive(t, task.ID)
	return task.ID
}

func (s *served) waitStatus(t *testing.T, id int64, status string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var task struct {
			Status string `json:"status"`
		}
		return s.getJSON(t, fmt.Sprintf("/v1/tasks/%d", id), &task) == http.StatusOK && task.Status == status
	}, 30*time.Second, 20*time.Millisecond, "task %d to be %s", id, status)
}

func (s *served) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// What an operator reads: serve's stderr with --log-format json is JSON
// lines and nothing else, from the first line to the last, with a line per
// task created and finished and per step retry and block, and durations as
// strings.
func TestServeLogsAreJSONLines(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "w.hcl"), []byte(logsHCL), 0o644))
	s := startServe(t, bin, "--log-format", "json", "--db", tempDB(t), "--workflows", dir)
	flaky := createTask(t, s, "shop/flaky")
	doomed := createTask(t, s, "shop/doomed")
	s.waitStatus(t, flaky, "complete")
	s.waitStatus(t, doomed, "error")
	// The line is written before the task's state can be read as final.
	require.NoError(t, s.stop(t, syscall.SIGTERM))

	recs := jsonLines(t, s.lines())
	requireNoNanoseconds(t, recs)

	serving := withMsg(recs, "taskerd serving", 0)
	require.Len(t, serving, 1)
	require.Equal(t, s.url, serving[0]["addr"], "the address scripts read")

	for _, id := range []int64{flaky, doomed} {
		created := withMsg(recs, "task created", id)
		require.Len(t, created, 1, "task %d", id)
		require.Equal(t, "INFO", created[0]["level"])
		require.Regexp(t, `^shop/(flaky|doomed)@0\.1\.0$`, created[0]["workflow"])
	}

	retry := withMsg(recs, "step failed; retrying", flaky)
	require.Len(t, retry, 1)
	require.Equal(t, "WARN", retry[0]["level"])
	require.Equal(t, "charge", retry[0]["step"])
	require.Equal(t, float64(1), retry[0]["attempt"])
	require.Equal(t, float64(3), retry[0]["max_attempts"])
	require.Equal(t, "handler_error", retry[0]["kind"])
	require.Equal(t, "card declined", retry[0]["error"])
	retryIn, err := time.ParseDuration(retry[0]["retry_in"].(string))
	require.NoError(t, err)
	require.LessOrEqual(t, retryIn, 50*time.Millisecond)

	finished := withMsg(recs, "task finished", flaky)
	require.Len(t, finished, 1)
	require.Equal(t, "complete", finished[0]["status"])
	took, err := time.ParseDuration(finished[0]["took"].(string))
	require.NoError(t, err)
	require.GreaterOrEqual(t, took, 40*time.Millisecond, "at least the retry's backoff")

	blocked := withMsg(recs, "step blocked", doomed)
	require.Len(t, blocked, 1)
	require.Equal(t, "ERROR", blocked[0]["level"])
	require.Equal(t, "retries_exhausted", blocked[0]["reason"])
	require.Equal(t, "gateway down", blocked[0]["error"])
	require.Equal(t, float64(2), blocked[0]["attempt"])
	failed := withMsg(recs, "task finished", doomed)
	require.Len(t, failed, 1)
	require.Equal(t, "error", failed[0]["status"])

	// Durations elsewhere: the engine's lease, the stop's grace, a
	// request's time.
	started := withMsg(recs, "engine started", 0)
	require.Len(t, started, 1)
	require.Equal(t, "30s", started[0]["lease"])
	stopping := withMsg(recs, "stopping", 0)
	require.Len(t, stopping, 1)
	require.Equal(t, "30s", stopping[0]["grace"])
	requests := withMsg(recs, "request", 0)
	require.NotEmpty(t, requests)
	_, err = time.ParseDuration(requests[0]["took"].(string))
	require.NoError(t, err)
	require.Equal(t, "stopped", recs[len(recs)-1]["msg"], "the last line too is JSON")
}

// --log-format text writes slog's text lines, the serving line included.
func TestServeLogFormatText(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "w.hcl"), []byte(logsHCL), 0o644))
	s := startServe(t, bin, "--log-format", "text", "--db", tempDB(t), "--workflows", dir)
	id := createTask(t, s, "shop/flaky")
	s.waitStatus(t, id, "complete")
	require.NoError(t, s.stop(t, syscall.SIGTERM))
	var sawServing, sawRetry bool
	for _, l := range s.lines() {
		require.Regexp(t, `^time=\S+ level=(DEBUG|INFO|WARN|ERROR) msg=`, l, "every line is a text record")
		if strings.Contains(l, `msg="taskerd serving" addr=`+s.url+" ") {
			sawServing = true
		}
		if strings.Contains(l, `msg="step failed; retrying" task_id=`+fmt.Sprint(id)+" ") {
			require.Regexp(t, ` retry_in=[0-9.]+m?s( |$)`, l)
			sawRetry = true
		}
	}
	require.True(t, sawServing, "the serving line carries the address")
	require.True(t, sawRetry)
}

// An error serve ends with, once log lines are out, is one more of them.
func TestServeExitErrorIsALogLine(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	r := runCLI(t, "serve", "--auth", "none", "--listen", taken.Addr().String(), "--db", tempDB(t), "--workflows", "../../workflows/linear.hcl")
	require.Equal(t, 1, r.code, r.stderr)
	recs := jsonLines(t, strings.Split(strings.TrimSpace(r.stderr), "\n"))
	last := recs[len(recs)-1]
	require.Equal(t, "exiting", last["msg"])
	require.Equal(t, "ERROR", last["level"])
	require.Equal(t, float64(1), last["exit_code"])
	require.Contains(t, last["err"], "listening on "+taken.Addr().String())

	// Bad settings, refused before any log line, stay one plain line.
	for _, args := range [][]string{{"--log-format", "xml"}, {"--log-level", "loud"}} {
		r = runCLI(t, append([]string{"serve", "--auth", "none", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", "../../workflows"}, args...)...)
		require.Equal(t, 2, r.code, r.stderr)
		require.Regexp(t, `^taskerd: --log-(format "xml": want json or text|level "loud": want debug, info, warn or error)\n$`, r.stderr)
	}
}

// The decision log shares stderr by default, as JSON lines like the rest;
// "off" turns it off.
func TestServeDecisionLogOnStderrAndOff(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "w.hcl"), []byte(logsHCL), 0o644))
	for _, dest := range []string{"", "off"} {
		keyFile := filepath.Join(t.TempDir(), "admin.key")
		args := []string{"--db", tempDB(t), "--workflows", dir, "--bootstrap-key-file", keyFile}
		if dest != "" {
			args = append(args, "--config", writeFile(t, "taskerd.hcl", fmt.Sprintf("policy {\n  decision_log = %q\n}\n", dest)))
		}
		s := startServeAuth(t, bin, args...)
		key, err := os.ReadFile(keyFile)
		require.NoError(t, err)
		req, err := http.NewRequest("GET", s.url+"/v1/workflows", nil)
		require.NoError(t, err)
		req.Header.Set("X-API-Key", strings.TrimSpace(string(key)))
		req.Header.Set("X-Request-Id", "decision-log-test")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
		s.waitLog(t, `"request_id":"decision-log-test"`) // the request's own line
		require.NoError(t, s.stop(t, syscall.SIGTERM))

		var lines []string
		for _, l := range s.lines() {
			if strings.HasPrefix(l, "admin API key: ") {
				continue // the bootstrap key's own line (not a log line)
			}
			require.NotContains(t, l, strings.TrimSpace(string(key))[4:], "the key is in no log line")
			lines = append(lines, l)
		}
		recs := jsonLines(t, lines)
		decisions := withMsg(recs, "policy decision", 0)
		if dest == "off" {
			require.Empty(t, decisions)
			continue
		}
		require.Len(t, decisions, 1)
		d := decisions[0]
		require.Equal(t, "INFO", d["level"])
		require.Equal(t, "decision-log-test", d["request_id"])
		require.Equal(t, "workflow:index", d["action"])
		require.Equal(t, true, d["allow"])
		_, err = time.ParseDuration(d["took"].(string))
		require.NoError(t, err)
	}
}

// Under run, the plugins' own lines reach stderr (in its format), and
// stdout keeps only what run prints.
func TestRunShowsPluginLogs(t *testing.T) {
	t.Parallel()
	cfg, _ := pluginConfig(t, "")
	wf := writeFile(t, "wf.hcl", pluginHCL)
	r := runCLI(t, "run", wf, "--config", cfg, "--db", tempDB(t), "--json", "--log-format", "json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "complete", decodeReport(t, r.stdout).Status, "stdout is the JSON document alone")
	recs := jsonLines(t, strings.Split(strings.TrimSpace(r.stderr), "\n"))
	echo := withMsg(recs, "echo called", 0)
	require.Len(t, echo, 1, r.stderr)
	require.Equal(t, "testp", echo[0]["plugin"])
	require.Equal(t, "first", echo[0]["step"])
	require.Equal(t, "INFO", echo[0]["level"])
	require.Empty(t, withMsg(recs, "task created", 0), "the engine's info lines stay off: progress says it")

	r = runCLI(t, "run", wf, "--config", cfg, "--db", tempDB(t), "--log-format", "text")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^time=\S+ level=INFO msg="echo called" plugin=testp .*step=first`, r.stderr)
	require.NotContains(t, r.stdout, "echo called")

	r = runCLI(t, "run", wf, "--config", cfg, "--db", tempDB(t), "--log-level", "warn")
	require.Equal(t, 0, r.code, r.stderr)
	require.NotContains(t, r.stderr, "echo called")

	r = runCLI(t, "run", wf, "--config", cfg, "--db", tempDB(t), "--log-format", "yaml")
	require.Equal(t, 2, r.code)
	require.Equal(t, "taskerd: --log-format \"yaml\": want json or text\n", r.stderr)
}

// exitMessage is the error a command ended with, as its stderr says it:
// the last line "taskerd: MESSAGE" when nothing was logged before it, or
// the err of the JSON "exiting" record serve ends its log lines with.
func exitMessage(t *testing.T, stderr string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if msg, ok := strings.CutPrefix(last, "taskerd: "); ok {
		return msg
	}
	var rec struct {
		Msg string `json:"msg"`
		Err string `json:"err"`
	}
	require.NoError(t, json.Unmarshal([]byte(last), &rec), "the last line of stderr is neither taskerd: … nor a JSON record: %s", stderr)
	require.Equal(t, "exiting", rec.Msg, stderr)
	return rec.Err
}
