package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/config"
)

// The starter's taskerd.hcl names every setting config.go knows (root
// attributes and blocks, and the keys of the plugin, auth and policy
// blocks), so that it cannot silently fall behind; as written (all
// commented out) it is a valid config.
func TestStarterConfigNamesEverySetting(t *testing.T) {
	t.Parallel()
	tmpl, err := starter.ReadFile("starter/taskerd.hcl")
	require.NoError(t, err)
	_, err = config.Parse("taskerd.hcl", tmpl)
	require.NoError(t, err)

	// Every file of the config package that declares settings.
	files, err := filepath.Glob("../../config/*.go")
	require.NoError(t, err)
	var src []byte
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			src = append(src, b...)
		}
	}
	var keys []string
	for _, m := range regexp.MustCompile(`\{Name: "([a-z_0-9]+)"\}|\{Type: "([a-z_]+)"|hcl:"([a-z_0-9]+)[,"]`).FindAllStringSubmatch(string(src), -1) {
		keys = append(keys, m[1]+m[2]+m[3])
	}
	require.Greater(t, len(keys), 15, "the schema was found in config.go: %v", keys)
	for _, k := range keys {
		require.Regexp(t, `(?m)^#[ #]*`+k+`( = | \{|\s*=| ")`, string(tmpl), "setting %q is missing from the starter taskerd.hcl", k)
	}
	// Uncommenting the plugin block gives a block that parses once
	// plugins hash --write has filled in its sha256.
	require.Contains(t, string(tmpl), "# plugin \"hello\" {\n#   path   = \"plugins/hello/hello\"")
}

// init writes the starter and refuses to overwrite it; validate passes;
// serve in the directory serves the hello workflow as is, and a task of
// it completes over the API.
func TestInitThenServe(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	dir := filepath.Join(t.TempDir(), "proj")
	r := runBinary(t, bin, "init", dir)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "taskerd keys create --subject me --role operator --namespace default")
	for _, f := range []string{"taskerd.hcl", "workflows/hello.hcl", "plugins/hello/main.go", "plugins/hello/main_test.go", "plugins/hello/go.mod", "plugins/hello/README.md"} {
		require.FileExists(t, filepath.Join(dir, f))
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "plugins/hello/go.mod"))
	require.NoError(t, err)
	require.Contains(t, string(gomod), "// replace github.com/taskerd/taskerd => /path/to/your/taskerd/clone")
	require.Contains(t, string(gomod), "require github.com/taskerd/taskerd ")

	r = runBinary(t, bin, "init", dir)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "not overwriting what exists (use --force to): "+filepath.Join(dir, "plugins/hello/README.md"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "workflows/hello.hcl"), []byte("changed"), 0o644))
	r = runBinary(t, bin, "init", "--force", dir)
	require.Equal(t, 0, r.code, r.stderr)
	r = runBinary(t, bin, "validate", filepath.Join(dir, "workflows"))
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "default/hello@0.1.0  4 steps  3 levels")

	s := startServeIn(t, bin, dir)
	require.Len(t, s.logged(t, "config read"), 1, "serve read ./taskerd.hcl")
	var list struct {
		Workflows []struct {
			Name      string `json:"name"`
			Available bool   `json:"available"`
		} `json:"workflows"`
	}
	require.Equal(t, http.StatusOK, s.getJSON(t, "/v1/workflows", &list))
	require.Len(t, list.Workflows, 1)
	require.Equal(t, "hello", list.Workflows[0].Name)
	require.True(t, list.Workflows[0].Available)
	code, body := s.post(t, "/v1/tasks", map[string]any{"workflow": "hello", "context": map[string]any{"name": "Ada"}})
	require.Equal(t, http.StatusCreated, code, body)
	s.waitTaskStatus(t, body["id"], "complete")
	require.NoError(t, s.stop(t, syscall.SIGTERM))
	require.FileExists(t, filepath.Join(dir, "taskerd.db"))
}

// The plugin skeleton builds and passes its tests against this source
// tree (init --sdk-path), and the loop its README gives works: enable the
// block, plugins hash --write, and a workflow runs through hello.greet.
func TestInitPluginSkeletonBuildsAndRuns(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	dir := t.TempDir()
	r := runBinary(t, bin, "init", "--sdk-path", root, dir)
	require.Equal(t, 0, r.code, r.stderr)
	pdir := filepath.Join(dir, "plugins", "hello")
	gomod, err := os.ReadFile(filepath.Join(pdir, "go.mod"))
	require.NoError(t, err)
	require.Contains(t, string(gomod), "\nreplace github.com/taskerd/taskerd => "+root+"\n")

	goCmd := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = pdir
		// The module cache this source tree was built with has every
		// module the SDK needs.
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %v: %s", args, out)
		t.Logf("go %v: %s", args, time.Since(start).Round(time.Millisecond))
	}
	goCmd("mod", "tidy")
	goCmd("test", "./...")
	goCmd("build", "-o", "hello", ".")

	// Enable the plugin as the README says: uncomment its block.
	cfgPath := filepath.Join(dir, "taskerd.hcl")
	cfg, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	lines := strings.Split(string(cfg), "\n")
	in := false
	for i, l := range lines {
		if strings.HasPrefix(l, `# plugin "hello" {`) {
			in = true
		}
		if in {
			lines[i] = strings.TrimPrefix(l, "# ")
			if l == "# }" {
				in = false
			}
		}
	}
	require.NoError(t, os.WriteFile(cfgPath, []byte(strings.Join(lines, "\n")), 0o644))
	r = runBinary(t, bin, "plugins", "hash", "--write", cfgPath)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `plugin "hello": sha256 set to `)
	r = runBinary(t, bin, "plugins", "list", "--config", cfgPath)
	require.Equal(t, 0, r.code, r.stderr+r.stdout)
	require.Regexp(t, `(?m)^hello +step_handler +\S+ +ok +greet$`, r.stdout)

	wf := filepath.Join(dir, "workflows", "hello.hcl")
	src, err := os.ReadFile(wf)
	require.NoError(t, err)
	src = []byte(strings.Replace(string(src), `    handler = "builtin.echo"`+"\n  }\n  step \"wait\"", `    handler = "hello.greet"`+"\n  }\n  step \"wait\"", 1))
	require.Contains(t, string(src), `handler = "hello.greet"`)
	require.NoError(t, os.WriteFile(wf, src, 0o644))
	r = runBinary(t, bin, "run", "--config", cfgPath, "--db", "sqlite:"+filepath.Join(dir, "run.db"), "--context", `{"name":"Ada"}`, "--json", wf)
	require.Equal(t, 0, r.code, r.stderr)
	rep := decodeReport(t, r.stdout)
	require.Equal(t, "complete", rep.Status)
	require.JSONEq(t, `{"greeting":"hello, Ada"}`, string(stepsByName(rep)["greet"].Result))
}
