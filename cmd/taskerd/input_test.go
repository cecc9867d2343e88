package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends/postgres/pgtest"
	"github.com/taskerd/taskerd/engine"
)

// A --context that not every backend can store is exit 2 with one line on
// both, and creates no task. Before, SQLite stored it and ran the task
// (exit 0) and PostgreSQL failed the insert (exit 1).
func TestRunRefusesAContextNoBackendCanStore(t *testing.T) {
	t.Parallel()
	for name, db := range map[string]func(t *testing.T) string{
		"sqlite":   tempDB,
		"postgres": func(t *testing.T) string { return pgtest.NewDatabase(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dsn := db(t)
			dir := t.TempDir()
			for _, tc := range []struct{ name, content, want string }{
				{"not UTF-8", "{\"order_id\": \"A\xff\", \"customer_email\": \"a@example.com\", \"items\": []}", "byte 15 is not UTF-8"},
				{"escaped NUL", `{"order_id": "A\u0000", "customer_email": "a@example.com", "items": []}`, `the escape \u0000`},
				{"lone surrogate", `{"order_id": "\udc00", "customer_email": "a@example.com", "items": []}`, "unpaired UTF-16 surrogate"},
			} {
				file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
				require.NoError(t, os.WriteFile(file, []byte(tc.content), 0o644))
				r := runCLI(t, "run", writeFile(t, "schema.hcl", schemaHCL), "--db", dsn, "--context", "@"+file, "--json")
				require.Equal(t, 2, r.code, "%s: %s", tc.name, r.stderr)
				require.Contains(t, r.stderr, "--context cannot be stored: ", tc.name)
				require.Contains(t, r.stderr, tc.want, tc.name)
				require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one readable line: %q", r.stderr)
				require.Empty(t, r.stdout, tc.name)
			}
			// Nothing was written: the next task is the database's first
			// (PostgreSQL spends an id even on an insert that fails).
			r := runCLI(t, "run", writeFile(t, "schema.hcl", schemaHCL), "--db", dsn, "--context", orderContext, "--json")
			require.Equal(t, 0, r.code, r.stderr)
			rep := decodeReport(t, r.stdout)
			require.Equal(t, "1", rep.TaskID)
			require.Equal(t, "complete", rep.Status)
		})
	}
}

// The client commands refuse, before sending anything, what the server
// would refuse or what JSON encoding would silently change (a byte that is
// not UTF-8 becomes U+FFFD): exit 2, one line.
func TestTaskClientRefusesUnstorableFlags(t *testing.T) {
	t.Parallel()
	server := apiServer(t)
	badResults := writeFile(t, "results.json", "{\"a\": \"\xff\"}")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"task", "create", "default/diamond", "--reason", "caf\xc3"}, "--reason must be UTF-8 text without NUL characters (byte 3 is not UTF-8)"},
		{[]string{"task", "create", "default/diamond", "--reason", "a\x00b"}, "--reason must be UTF-8 text without NUL characters (byte 1 is a NUL character)"},
		{[]string{"task", "create", "default/diamond", "--reason", strings.Repeat("r", engine.MaxReasonBytes+1)}, "--reason must be at most 4096 bytes, not 4097"},
		{[]string{"task", "create", "default/diamond", "--tag", "ok", "--tag", ""}, `--tag "" must not be empty`},
		{[]string{"task", "create", "default/diamond", "--tag", "\xff"}, `--tag "\xff" must be UTF-8 text`},
		{append([]string{"task", "create", "default/diamond"}, strings.Split(strings.Repeat("--tag=t ", engine.MaxTags+1), " ")[:engine.MaxTags+1]...), "--tag is given 65 times; at most 64 tags are allowed"},
		{[]string{"task", "create", "default/diamond", "--idempotency-key", strings.Repeat("k", 256)}, "--idempotency-key must be at most 255 bytes, not 256"},
		{[]string{"task", "create", "default/diamond", "--context", "{\"a\": \"\xff\"}"}, "--context cannot be stored: byte 7 is not UTF-8"},
		{[]string{"task", "cancel", "1", "--reason", "\x00"}, "--reason must be UTF-8 text"},
		{[]string{"task", "resolve", "1", "--step", "a", "--results", "@" + badResults}, "--results cannot be stored: byte 7 is not UTF-8"},
	} {
		r := runCLI(t, append(tc.args, "--server", server)...)
		require.Equal(t, 2, r.code, "%q: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.want, "%q", tc.args)
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one readable line: %q", r.stderr)
	}
	// Nothing reached the server: the listing is empty.
	r := runCLI(t, "task", "list", "--server", server, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"tasks": [], "next_cursor": null}`, r.stdout)
}
