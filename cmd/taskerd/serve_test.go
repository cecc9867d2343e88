package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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

const serveHCL = `workflow "work" {
  step "a" { handler = "builtin.noop" }
  step "b" {
    handler    = "builtin.sleep"
    depends_on = [step.a]
    config     = { duration = "100ms" }
  }
  step "c" {
    handler    = "builtin.noop"
    depends_on = [step.b]
  }
}
`

// served is a running `taskerd serve`.
type served struct {
	cmd  *exec.Cmd
	url  string
	done chan error

	mu  sync.Mutex
	log []string // its stderr lines
}

// waitLog waits for a stderr line containing text.
func (s *served) waitLog(t *testing.T, text string) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, l := range s.log {
			if strings.Contains(l, text) {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "no log line with %q", text)
}

// servingAddr reads the API's URL from serve's "taskerd serving" log line,
// JSON or text, as a script would.
func servingAddr(line string) (string, bool) {
	var rec struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal([]byte(line), &rec) == nil {
		return rec.Addr, rec.Msg == "taskerd serving" && rec.Addr != ""
	}
	if !strings.Contains(line, ` msg="taskerd serving" `) {
		return "", false
	}
	for _, field := range strings.Fields(line) {
		if url, ok := strings.CutPrefix(field, "addr="); ok {
			return url, true
		}
	}
	return "", false
}

// startServe starts the binary with --auth none and waits for its
// "taskerd serving" line.
func startServe(t *testing.T, bin string, args ...string) *served {
	t.Helper()
	return startServeAuth(t, bin, append([]string{"--auth", "none"}, args...)...)
}

func startServeAuth(t *testing.T, bin string, args ...string) *served {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	s := &served{cmd: cmd, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			line := lines.Text()
			s.mu.Lock()
			s.log = append(s.log, line)
			s.mu.Unlock()
			if url, ok := servingAddr(line); ok {
				addr <- url
			}
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-s.done })
	select {
	case s.url = <-addr:
	case err := <-s.done:
		s.done <- err
		s.mu.Lock()
		defer s.mu.Unlock()
		t.Fatalf("taskerd serve exited before serving: %v\n%s", err, strings.Join(s.log, "\n"))
	case <-time.After(30 * time.Second):
		t.Fatal("taskerd serve did not start within 30s")
	}
	return s
}

func (s *served) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(sig))
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("taskerd serve did not stop within 60s")
		return nil
	}
}

func (s *served) getJSON(t *testing.T, path string, into any) int {
	t.Helper()
	res, err := http.Get(s.url + path)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	if into != nil && res.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(body, into), string(body))
	}
	return res.StatusCode
}

// workflowNames lists the names of the workflows the daemon serves.
func (s *served) workflowNames(t *testing.T) []string {
	t.Helper()
	var list struct {
		Workflows []struct{ Name string } `json:"workflows"`
	}
	require.Equal(t, http.StatusOK, s.getJSON(t, "/v1/workflows", &list))
	var out []string
	for _, w := range list.Workflows {
		out = append(out, w.Name)
	}
	return out
}

func (s *served) countTasks(t *testing.T, status string) int {
	t.Helper()
	var page struct {
		Tasks []struct{ ID int64 } `json:"tasks"`
	}
	require.Equal(t, http.StatusOK, s.getJSON(t, "/v1/tasks?limit=500&status="+status, &page))
	return len(page.Tasks)
}

// The daemon stops cleanly in the middle of work and a restart finishes it:
// every task completes and no step runs twice.
func TestServeStopMidRunAndRestart(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	db := "sqlite:" + filepath.Join(t.TempDir(), "taskerd.db")
	args := []string{"--db", db, "--workflows", dir, "--workers", "4"}

	s := startServe(t, bin, args...)
	const tasks = 100
	var wg sync.WaitGroup
	for c := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range tasks / 10 {
				body := fmt.Sprintf(`{"workflow": "default/work", "context": {"n": %d}}`, c*10+i)
				res, err := http.Post(s.url+"/v1/tasks", "application/json", bytes.NewBufferString(body))
				if !assertNoError(t, err) {
					return
				}
				res.Body.Close()
				if res.StatusCode != http.StatusCreated {
					t.Errorf("create: status %d", res.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	// Stop once some tasks are done and most are not.
	require.Eventually(t, func() bool { return s.countTasks(t, "complete") >= 5 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, s.stop(t, syscall.SIGTERM), "a SIGTERM stop exits 0")

	s = startServe(t, bin, args...)
	require.Eventually(t, func() bool { return s.countTasks(t, "complete") == tasks }, 60*time.Second, 50*time.Millisecond,
		"every task completes after the restart")
	for id := 1; id <= tasks; id++ {
		var steps struct {
			Steps []struct {
				Name     string `json:"name"`
				Attempts int    `json:"attempts"`
			} `json:"steps"`
		}
		require.Equal(t, http.StatusOK, s.getJSON(t, fmt.Sprintf("/v1/tasks/%d/steps", id), &steps))
		for _, st := range steps.Steps {
			require.Equal(t, 1, st.Attempts, "task %d step %s ran once", id, st.Name)
		}
	}
	require.NoError(t, s.stop(t, syscall.SIGINT))
}

func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// SIGHUP reloads the workflows; a directory that does not load keeps the
// loaded set.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	s := startServe(t, bin, "--db", "sqlite:"+filepath.Join(t.TempDir(), "t.db"), "--workflows", dir)
	names := func() []string { return s.workflowNames(t) }
	require.Equal(t, []string{"work"}, names())

	require.NoError(t, os.WriteFile(filepath.Join(dir, "more.hcl"), []byte(`workflow "more" {
  step "x" { handler = "builtin.noop" }
}`), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return len(names()) == 2 }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.hcl"), []byte(`workflow "broken" {`), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	// The reload is refused; the server keeps serving the two it had.
	s.waitLog(t, "reloading workflows failed")
	require.Equal(t, http.StatusOK, s.getJSON(t, "/health/live", nil))
	require.ElementsMatch(t, []string{"work", "more"}, names())
	require.NoError(t, s.stop(t, syscall.SIGTERM))
}

// Without an auth setting the first start creates an admin API key, writes
// it to the key file (mode 0600), logs where, never the key, and keeps only
// its hash; the API needs it.
func TestServeBootstrapsAnAdminKey(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dbPath := filepath.Join(t.TempDir(), "taskerd.db")
	keyFile := filepath.Join(t.TempDir(), "admin.key")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	args := []string{"--db", "sqlite:" + dbPath, "--workflows", dir, "--bootstrap-key-file", keyFile}

	s := startServeAuth(t, bin, args...)
	s.waitLog(t, "created the bootstrap admin API key")
	fileKey, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	key := strings.TrimSuffix(string(fileKey), "\n")
	require.Equal(t, key+"\n", string(fileKey), "one line")
	require.True(t, strings.HasPrefix(key, "tkd_"), key)
	info, err := os.Stat(keyFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	s.mu.Lock()
	var created map[string]any
	for _, l := range s.log {
		if strings.Contains(l, "created the bootstrap admin API key") {
			require.NoError(t, json.Unmarshal([]byte(l), &created), "a structured log line: %s", l)
		}
	}
	s.mu.Unlock()
	require.Equal(t, keyFile, created["key_file"], "the log says where the key is")
	require.Equal(t, false, created["replaced_file"])
	entries, err := os.ReadDir(filepath.Dir(keyFile))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left beside the key file")

	get := func(s *served, key string) int {
		req, err := http.NewRequest("GET", s.url+"/v1/workflows", nil)
		require.NoError(t, err)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, get(s, ""))
	require.Equal(t, http.StatusUnauthorized, get(s, key+"0"))
	require.Equal(t, http.StatusOK, get(s, key))
	// Several credentials must all be right, and agree (issue 14, item 6).
	several := func(header ...string) int {
		req, err := http.NewRequest("GET", s.url+"/v1/workflows", nil)
		require.NoError(t, err)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, several("Authorization", "Bearer tkd_wrong", "X-API-Key", key), "a wrong bearer beside the right key")
	require.Equal(t, http.StatusUnauthorized, several("Authorization", "Bearer "+key, "Authorization", "Bearer tkd_wrong"))
	require.Equal(t, http.StatusOK, several("Authorization", "Bearer "+key, "X-API-Key", key))
	require.Equal(t, http.StatusOK, s.getJSON(t, "/health/ready", nil))
	s.mu.Lock()
	for _, l := range s.log {
		require.NotContains(t, l, key[4:], "the key appears in no log line")
	}
	s.mu.Unlock()
	require.NoError(t, s.stop(t, syscall.SIGTERM))

	// The database holds the hash, not the key.
	raw, err := os.ReadFile(dbPath)
	require.NoError(t, err)
	require.NotContains(t, string(raw), key[4:])

	// A restart shows no key, and the first one still works.
	require.NoError(t, os.Remove(keyFile))
	s = startServeAuth(t, bin, args...)
	require.Equal(t, http.StatusOK, get(s, key))
	s.mu.Lock()
	for _, l := range s.log {
		require.NotContains(t, l, "created the bootstrap admin API key")
		require.NotContains(t, l, key[4:])
	}
	s.mu.Unlock()
	_, err = os.Stat(keyFile)
	require.ErrorIs(t, err, os.ErrNotExist, "no key file when no key was created")
	require.NoError(t, s.stop(t, syscall.SIGTERM))
}

func TestServeBadSettingsExit2(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "serve", "--auth", "jwt", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", "../../workflows")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `--auth "jwt": the only mode is none`)
	r = runCLI(t, "serve", "--auth", "none", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", filepath.Join(t.TempDir(), "missing"))
	require.Equal(t, 2, r.code, r.stderr)

	// The API's database deadline: positive, and shorter than the write
	// timeout (or its 503 could not be sent); db_timeout in the config
	// reaches the same check, and a malformed one names file:line.
	r = runCLI(t, "serve", "--auth", "none", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", "../../workflows", "--db-timeout", "0s")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "--db-timeout must be more than 0 and less than 1m0s (the API's write timeout), not 0s")
	cfg := writeFile(t, "taskerd.hcl", "db_timeout = \"90s\"\n")
	r = runCLI(t, "serve", "--auth", "none", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", "../../workflows", "--config", cfg)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "not 1m30s")
	cfg = writeFile(t, "taskerd.hcl", "\ndb_timeout = \"soon\"\n")
	r = runCLI(t, "serve", "--auth", "none", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", "../../workflows", "--config", cfg)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "taskerd.hcl:2:14: Invalid db_timeout")
}
