package main

import (
	"encoding/json"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVersionLineFromBuildInfo(t *testing.T) {
	t.Parallel()
	platform := runtime.GOOS + "/" + runtime.GOARCH
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	require.Equal(t, "taskerd v1.2.3 (commit 0123456789ab, 2026-01-02T03:04:05Z, modified) go1.26.8 "+platform, versionOf(info).String())

	// A build from a source tree outside git: "(devel)" says devel.
	info = &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	require.Equal(t, "taskerd devel go1.26.8 "+platform, versionOf(info).String())
	require.Equal(t, "devel", versionOf(nil).Version)
}

func TestVersionCommandAndFlagAgree(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "version")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `^taskerd \S+ .*go1\.\d+\S* \S+/\S+\n$`, r.stdout)
	flag := runCLI(t, "--version")
	require.Equal(t, 0, flag.code, flag.stderr)
	require.Equal(t, r.stdout, flag.stdout)

	r = runCLI(t, "version", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var v buildVersion
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v))
	require.Equal(t, runtime.Version(), v.GoVersion)
}

// The real binary reports what the toolchain stamped into it: `go version
// -m` reads the same build information from outside.
func TestVersionOfTheBuiltBinary(t *testing.T) {
	t.Parallel()
	bin := buildTaskerd(t)
	r := runBinary(t, bin, "--version")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, r.stdout, runBinary(t, bin, "version").stdout)

	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	require.NoError(t, err, string(out))
	settings := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "build" {
			k, v, _ := strings.Cut(f[1], "=")
			settings[k] = v
		}
		if len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/taskerd/taskerd" && f[2] != "(devel)" {
			require.Contains(t, r.stdout, "taskerd "+f[2]+" ")
		}
	}
	require.Contains(t, r.stdout, " "+runtime.GOOS+"/"+runtime.GOARCH+"\n")
	if rev := settings["vcs.revision"]; rev != "" {
		// Built inside a git clone (not a worktree: the toolchain does not
		// stamp those) without -buildvcs=false.
		require.Contains(t, r.stdout, "(commit "+rev[:12])
		require.Equal(t, settings["vcs.modified"] == "true", strings.Contains(r.stdout, "modified"))
	} else {
		require.NotContains(t, r.stdout, "commit")
	}
}
