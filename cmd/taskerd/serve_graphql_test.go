package main

import (
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api/graphql"
	"github.com/taskerd/taskerd/config"
)

// serve's /v1/graphql limits are the config's graphql block, the defaults
// for what it leaves out.
func TestGraphQLLimitsFromConfig(t *testing.T) {
	t.Parallel()
	defaults := graphql.Limits{MaxDepth: graphql.DefaultMaxDepth, MaxComplexity: graphql.DefaultMaxComplexity}
	require.Equal(t, defaults, graphqlLimits(nil), "no config")
	for src, want := range map[string]graphql.Limits{
		"listen = \":8080\"\n":                                       defaults,
		"graphql {\n}\n":                                             defaults,
		"graphql {\n  max_depth = 3\n}\n":                            {MaxDepth: 3, MaxComplexity: graphql.DefaultMaxComplexity},
		"graphql {\n  max_complexity = 200\n}\n":                     {MaxDepth: graphql.DefaultMaxDepth, MaxComplexity: 200},
		"graphql {\n  max_depth = 20\n  max_complexity = 90000\n}\n": {MaxDepth: 20, MaxComplexity: 90000},
	} {
		cfg, err := config.Parse("taskerd.hcl", []byte(src))
		require.NoError(t, err, src)
		require.Equal(t, want, graphqlLimits(cfg), src)
	}
}

// taskerd serve applies the graphql block to /v1/graphql, and refuses a
// bad one before it starts, naming file:line.
func TestServeGraphQLLimits(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	wfDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(wfDir, "work.hcl"), []byte(serveHCL), 0o644))

	bad := writeFile(t, "taskerd.hcl", "graphql {\n  max_depth = 0\n}\n")
	r := runCLI(t, "serve", "--config", bad, "--auth", "none", "--listen", "127.0.0.1:0", "--db", tempDB(t), "--workflows", wfDir)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, bad+":2:15: Invalid max_depth: graphql.max_depth must be at least 1, not 0.")

	cfg := writeFile(t, "taskerd.hcl", "graphql {\n  max_depth      = 2\n  max_complexity = 3\n}\n")
	s := startServe(t, bin, "--config", cfg, "--db", tempDB(t), "--workflows", wfDir)
	gql := func(query string) map[string]any {
		t.Helper()
		code, body := s.post(t, "/v1/graphql", map[string]any{"query": query})
		require.Equal(t, http.StatusOK, code, body)
		return body
	}
	errorCode := func(body map[string]any) string {
		t.Helper()
		errs, _ := body["errors"].([]any)
		require.Len(t, errs, 1, "%v", body)
		return errs[0].(map[string]any)["extensions"].(map[string]any)["code"].(string)
	}

	// Depth 2, complexity 2: within both.
	body := gql(`{ health { status } }`)
	require.Nil(t, body["errors"], "%v", body)
	require.Equal(t, "healthy", body["data"].(map[string]any)["health"].(map[string]any)["status"])
	// Depth 3, complexity 3 (the default depth is 8).
	require.Equal(t, "DEPTH_LIMIT_EXCEEDED", errorCode(gql(`{ health { node { id } } }`)))
	// Depth 2, complexity 4 (the default allows 10000).
	require.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", errorCode(gql(`{ health { status exhausted inBackoff } }`)))
	require.NoError(t, s.stop(t, syscall.SIGTERM))
}
