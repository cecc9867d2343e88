package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
