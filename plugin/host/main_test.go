package host_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/taskerd/taskerd/plugin/host"
)

// Plugin binaries built once for every test and benchmark of the package.
var (
	testPluginPath string // testdata/testplugin
	testPluginSum  string
	bareEchoPath   string // testdata/bareecho
	bareEchoSum    string
	authTestPath   string // testdata/authtest
	authTestSum    string
)

func TestMain(m *testing.M) {
	if os.Getenv(orphanHostEnv) != "" {
		runOrphanHost() // the child half of TestNoOrphanAfterHostKilled
		return
	}
	dir, err := os.MkdirTemp("", "taskerd-plugin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		var err error
		if testPluginPath, testPluginSum, err = buildPlugin(dir, "testplugin"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if bareEchoPath, bareEchoSum, err = buildPlugin(dir, "bareecho"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if authTestPath, authTestSum, err = buildPlugin(dir, "authtest"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// buildPlugin builds ./testdata/NAME into dir (without -race: the plugin
// is a separate process, and a plain build keeps start-up times honest).
func buildPlugin(dir, name string) (path, sum string, err error) {
	path = filepath.Join(dir, name)
	if runtime.GOOS == "windows" {
		path += ".exe"
	}
	cmd := exec.Command("go", "build", "-o", path, "./testdata/"+name)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("building testdata/%s: %w", name, err)
	}
	sum, err = host.FileSHA256(path)
	return path, sum, err
}
