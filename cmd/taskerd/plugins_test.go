package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/plugin/host"
)

// testPlugin builds plugin/host's test plugin once per test binary.
var testPlugin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "taskerd-cli-plugin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "testplugin")
	if out, err := exec.Command("go", "build", "-o", bin, "../../plugin/host/testdata/testplugin").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the test plugin: %v\n%s", err, out)
	}
	return bin, nil
})

// pluginConfig writes a taskerd.hcl loading the test plugin as "testp"
// (with sum as its sha256, or the real one when sum is empty).
func pluginConfig(t *testing.T, sum string) (cfgPath, bin string) {
	t.Helper()
	bin, err := testPlugin()
	require.NoError(t, err)
	if sum == "" {
		sum, err = host.FileSHA256(bin)
		require.NoError(t, err)
	}
	cfgPath = writeFile(t, "taskerd.hcl", fmt.Sprintf(`
workers = 4
plugin "testp" {
  path   = %q
  sha256 = %q
  config = { greeting = "hello" }
}
`, bin, sum))
	return cfgPath, bin
}

func TestPluginsHashPrintsTheConfigLine(t *testing.T) {
	t.Parallel()
	bin, err := testPlugin()
	require.NoError(t, err)
	sum, err := host.FileSHA256(bin)
	require.NoError(t, err)
	r := runCLI(t, "plugins", "hash", bin)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, fmt.Sprintf("sha256 = %q\n", sum), r.stdout)

	r = runCLI(t, "plugins", "hash", "/does/not/exist")
	require.Equal(t, 2, r.code)
}

func TestPluginsList(t *testing.T) {
	t.Parallel()
	cfg, bin := pluginConfig(t, "")
	r := runCLI(t, "plugins", "list", "--config", cfg)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "PLUGIN")
	line := strings.Fields(strings.Split(r.stdout, "\n")[1])
	require.Equal(t, []string{"testp", "step_handler", bin, "ok", "block,", "crash_once,", "echo,", "emit,", "fail,", "noop,", "raw,", "slow,", "traced"}, line)

	bad, _ := pluginConfig(t, strings.Repeat("ab", 32))
	r = runCLI(t, "plugins", "list", "--config", bad)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stdout, "MISMATCH")
	require.Contains(t, r.stderr, "1 of 1 plugins cannot be used")
}

const pluginHCL = `workflow "through_plugin" {
  retry {
    base = "5ms"
    max  = "20ms"
  }
  step "first" {
    handler = "testp.echo"
    config  = { currency = "EUR" }
  }
  step "second" {
    handler    = "builtin.echo"
    depends_on = [step.first]
  }
}
`

func TestRunThroughAPlugin(t *testing.T) {
	t.Parallel()
	cfg, _ := pluginConfig(t, "")
	wf := writeFile(t, "wf.hcl", pluginHCL)
	r := runCLI(t, "run", wf, "--config", cfg, "--db", tempDB(t), "--context", `{"order_id":"A-1"}`, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	rep := decodeReport(t, r.stdout)
	require.Equal(t, "complete", rep.Status)
	var first struct {
		Config       map[string]string `json:"config"`
		Context      map[string]string `json:"context"`
		PluginConfig map[string]string `json:"plugin_config"`
	}
	require.NoError(t, json.Unmarshal(stepsByName(rep)["first"].Result, &first))
	require.Equal(t, "EUR", first.Config["currency"])
	require.Equal(t, "A-1", first.Context["order_id"])
	require.Equal(t, "hello", first.PluginConfig["greeting"], "the plugin got its config block")
	var second struct {
		Parents map[string]json.RawMessage `json:"parents"`
	}
	require.NoError(t, json.Unmarshal(stepsByName(rep)["second"].Result, &second))
	require.JSONEq(t, string(stepsByName(rep)["first"].Result), string(second.Parents["first"]))
}

func TestRunRefusesUnknownPluginHandler(t *testing.T) {
	t.Parallel()
	cfg, _ := pluginConfig(t, "")
	wf := writeFile(t, "wf.hcl", strings.Replace(pluginHCL, "testp.echo", "testp.charge", 1))
	r := runCLI(t, "run", wf, "--config", cfg, "--db", tempDB(t))
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, wf+`:7:15: step "first" of default/through_plugin@0.1.0 uses handler testp.charge, but plugin "testp" has no handler "charge" (available: testp.block, testp.crash_once, testp.echo, testp.emit, testp.fail, testp.noop, testp.raw, testp.slow, testp.traced)`)
}

func TestRunRefusesPluginWithWrongChecksum(t *testing.T) {
	t.Parallel()
	wrong := strings.Repeat("0", 64)
	cfg, _ := pluginConfig(t, wrong)
	wf := writeFile(t, "wf.hcl", pluginHCL)
	r := runCLI(t, "run", wf, "--config", cfg, "--db", tempDB(t))
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, `plugin "testp": refusing to start`)
	require.Contains(t, r.stderr, "the configuration expects "+wrong)
}

func TestRunConfigErrorsHaveFileAndLine(t *testing.T) {
	t.Parallel()
	cfg := writeFile(t, "taskerd.hcl", "workers = 2\nlistening = \"x\"\n")
	r := runCLI(t, "run", "../../workflows/linear.hcl", "--config", cfg, "--db", tempDB(t))
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, cfg+":2:1: Unsupported argument")
}
