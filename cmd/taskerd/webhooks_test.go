package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// webhookConfig writes a taskerd.hcl in dir with the database db and one
// webhook "hook" to url whose secret is in hook.key (not written).
func webhookConfig(t *testing.T, dir, db, url, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "taskerd.hcl")
	src := fmt.Sprintf("database = %q\n\nwebhook \"hook\" {\n  url         = %q\n  secret_file = \"hook.key\"\n%s}\n", db, url, extra)
	require.NoError(t, os.WriteFile(path, []byte(src), 0o644))
	return path
}

// A webhook whose secret file is missing, or empty, refuses the start with
// the block's file:line: nothing is sent unsigned.
func TestServeRefusesAWebhookWithoutItsSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := webhookConfig(t, dir, tempDB(t), "http://127.0.0.1:9/hook", "")
	r := runCLI(t, "serve", "--config", cfg, "--auth", "none", "--listen", "127.0.0.1:0", "--workflows", t.TempDir(), "--log-format", "text")
	require.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, cfg+`:3:1: webhook \"hook\": secret_file: open `+filepath.Join(dir, "hook.key"))

	require.NoError(t, os.WriteFile(filepath.Join(dir, "hook.key"), []byte("\n"), 0o600))
	r = runCLI(t, "serve", "--config", cfg, "--auth", "none", "--listen", "127.0.0.1:0", "--workflows", t.TempDir(), "--log-format", "text")
	require.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "hook.key is empty")
}

func TestWebhooksCLIRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := webhookConfig(t, dir, tempDB(t), "http://127.0.0.1:9/hook", "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"webhooks", "replay", "hook", "--config", cfg}, "--from SEQ is required"},
		{[]string{"webhooks", "replay", "hook", "--from", "0", "--config", cfg}, "--from 0: an event's seq is at least 1"},
		{[]string{"webhooks", "replay", "other", "--from", "1", "--config", cfg}, `no webhook "other" in ` + cfg + " (it has hook)"},
		{[]string{"webhooks", "replay", "hook"}, "--from SEQ is required"},
		{[]string{"webhooks", "replay"}, "accepts 1 arg(s)"},
	} {
		r := runCLI(t, tt.args...)
		assert.Equal(t, 2, r.code, "%v: %s", tt.args, r.stderr)
		assert.Contains(t, r.stderr, tt.want, "%v", tt.args)
	}
}

// receiver is a webhook endpoint that answers 500 until told otherwise and
// records, per seq, the deliveries it accepted (correctly signed only).
type receiver struct {
	srv    *httptest.Server
	secret []byte
	accept atomic.Bool

	mu       sync.Mutex
	accepted []int64 // seqs, in arrival order
	failed   int
	badSig   int
}

func newReceiver(t *testing.T, secret []byte) *receiver {
	r := &receiver{secret: secret}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if !validSignature(r.secret, req.Header.Get("Taskerd-Signature"), body) {
			r.badSig++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if !r.accept.Load() {
			r.failed++
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var ev struct {
			Seq int64 `json:"seq"`
		}
		if json.Unmarshal(body, &ev) != nil || strconv.FormatInt(ev.Seq, 10) != req.Header.Get("Taskerd-Event-Seq") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.accepted = append(r.accepted, ev.Seq)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) snapshot() (accepted []int64, failed, badSig int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.accepted...), r.failed, r.badSig
}

// validSignature is the check docs/webhooks.md shows receivers.
func validSignature(secret []byte, header string, body []byte) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(t, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	got, err := hex.DecodeString(sig)
	return err == nil && hmac.Equal(got, mac.Sum(nil))
}

// webhookListed is taskerd webhooks list --json's row of webhook "hook".
func webhookListed(t *testing.T, cfg string) webhookView {
	t.Helper()
	r := runCLI(t, "webhooks", "list", "--json", "--config", cfg)
	require.Equal(t, 0, r.code, r.stderr)
	var views []webhookView
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &views), r.stdout)
	require.Len(t, views, 1)
	return views[0]
}

// The test: events committed while the receiver fails survive a
// SIGKILL of serve and are delivered after the restart, each once, in
// order. Then taskerd webhooks list and replay on the same database.
func TestWebhookEventsSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := t.TempDir()
	secret := []byte("kill-test-secret")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hook.key"), append(secret, '\n'), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "workflows"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "workflows", "work.hcl"), []byte(serveHCL), 0o644))
	rec := newReceiver(t, secret)
	db := "sqlite:" + filepath.Join(dir, "taskerd.db")
	cfg := webhookConfig(t, dir, db, rec.srv.URL+"/hook",
		"  from = \"beginning\"\n  max_attempts = 100000\n  backoff_base = \"10ms\"\n  backoff_max = \"50ms\"\n")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("node_id = \"n1\"\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())

	s := startServeIn(t, bin, dir)
	id := createTask(t, s, "work")
	s.waitStatus(t, id, "complete")
	// Committed, not delivered: the receiver has refused every attempt.
	require.Eventually(t, func() bool { _, failed, _ := rec.snapshot(); return failed > 0 }, 10*time.Second, 10*time.Millisecond)
	before := webhookListed(t, cfg)
	require.NotNil(t, before.CursorSeq)
	require.Equal(t, int64(0), *before.CursorSeq)
	end := before.LogEnd
	require.Greater(t, end, int64(5), "the task's events are in the log")
	require.Equal(t, "n1", before.LeaseOwner)

	require.NoError(t, s.cmd.Process.Kill())
	<-s.done
	s.done <- nil
	accepted, _, _ := rec.snapshot()
	require.Empty(t, accepted)

	rec.accept.Store(true)
	startServeIn(t, bin, dir)
	require.Eventually(t, func() bool {
		v := webhookListed(t, cfg)
		return v.CursorSeq != nil && *v.CursorSeq == end
	}, 30*time.Second, 20*time.Millisecond)
	accepted, _, badSig := rec.snapshot()
	want := make([]int64, end)
	for i := range want {
		want[i] = int64(i + 1)
	}
	require.Equal(t, want, accepted, "every event once, in order")
	require.Zero(t, badSig)
	after := webhookListed(t, cfg)
	assert.Zero(t, after.Lag)
	assert.Zero(t, after.Dead)
	assert.Equal(t, []string{"*"}, after.Events)

	// A replay from event 3: the running serve delivers 3..end again.
	r := runCLI(t, "webhooks", "replay", "hook", "--from", "3", "--config", cfg)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, fmt.Sprintf("webhook hook: delivery restarts at event 3 (the log ends at %d)\n", end), r.stdout)
	require.Eventually(t, func() bool { a, _, _ := rec.snapshot(); return len(a) >= len(want)+len(want)-2 }, 30*time.Second, 20*time.Millisecond)
	accepted, _, _ = rec.snapshot()
	require.Equal(t, append(want, want[2:]...), accepted)

	r = runCLI(t, "webhooks", "dead", "hook", "--config", cfg)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "webhook hook has no dead letters\n", r.stdout)
	r = runCLI(t, "webhooks", "replay", "hook", "--from", strconv.FormatInt(end+2, 10), "--config", cfg)
	require.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, fmt.Sprintf("the log ends at event %d", end))
}
