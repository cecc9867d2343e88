package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/config"
)

const hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// A full example config (of the kind docs/configuration.md shows), with
// real values where the documentation has ellipses.
const designExample = `
listen   = "127.0.0.1:8080"
database = "sqlite:taskerd.db"        # or "postgres://user@host:5432/db"
workflows = "./workflows"
node_id  = "edge-1"                    # default: hostname + pid
workers  = 16                          # concurrent step executions on this node
lease    = "30s"
db_timeout = "2500ms"                  # deadline of an API request's database calls
max_workflow_size = 8388608            # bytes; default 4 MiB

plugin "payments" {
  path   = "./plugins/payments"
  sha256 = "` + hash + `"
  kind   = "step_handler"
  config = { api_base = "https://pay.example.com", retries = [1, 2], sandbox = true }
  max_concurrency = 8
}

plugin "jwt" {
  path   = "/opt/taskerd/jwt"
  sha256 = "` + hash + `"
  kind   = "authenticator"
}

plugin "apikey" {
  path   = "apikey"
  sha256 = "` + hash + `"
  kind   = "authenticator"
}

auth {
  authenticators = ["jwt", "apikey"]   # plugin names, tried in order
}
policy {
  dir      = "./policy"
  decision_log = "stderr"
}
`

func TestParseDesignExample(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("/etc/taskerd/taskerd.hcl", []byte(designExample))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", c.Listen)
	require.Equal(t, "sqlite:taskerd.db", c.Database)
	require.Equal(t, "/etc/taskerd/workflows", c.Workflows)
	require.Equal(t, "edge-1", c.NodeID)
	require.Equal(t, 16, c.Workers)
	require.Equal(t, 30*time.Second, c.Lease)
	require.Equal(t, 2500*time.Millisecond, c.DBTimeout)
	require.Equal(t, int64(8<<20), c.MaxWorkflowSize)
	require.Len(t, c.Plugins, 3)

	pay := c.Plugins[0]
	require.Equal(t, "payments", pay.Name)
	require.Equal(t, "/etc/taskerd/plugins/payments", pay.Path, "path is relative to the config file")
	require.Equal(t, hash, pay.SHA256)
	require.Equal(t, config.KindStepHandler, pay.Kind)
	require.JSONEq(t, `{"api_base":"https://pay.example.com","retries":[1,2],"sandbox":true}`, string(pay.Config))
	require.Equal(t, 8, pay.MaxConcurrency)
	require.Equal(t, 11, pay.DeclRange.Start.Line)

	require.Equal(t, "/opt/taskerd/jwt", c.Plugins[1].Path)
	require.Equal(t, "/etc/taskerd/apikey", c.Plugins[2].Path)
	require.JSONEq(t, `{}`, string(c.Plugins[1].Config))
	require.Equal(t, []*config.Plugin{pay}, c.StepHandlers())
	require.Equal(t, []*config.Plugin{c.Plugins[1], c.Plugins[2]}, c.AuthenticatorPlugins())
	require.Equal(t, []string{"jwt", "apikey"}, c.Auth.Authenticators)
	require.True(t, c.BootstrapKey(), "the bootstrap key stays beside the plugins")
	require.Equal(t, "/etc/taskerd/policy", c.Policy.Dir)
	require.Equal(t, "stderr", c.Policy.DecisionLog)
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("taskerd.hcl", []byte(`plugin "orders" {
  path   = "bin/orders"
  sha256 = "`+hash+`"
}`))
	require.NoError(t, err)
	require.Equal(t, config.KindStepHandler, c.Plugins[0].Kind)
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(wd, "bin", "orders"), c.Plugins[0].Path, "absolute: exec must not search PATH")
	require.Zero(t, c.Plugins[0].MaxConcurrency)
	require.JSONEq(t, `{}`, string(c.Plugins[0].Config))
	require.Zero(t, c.Workers)
	require.Zero(t, c.MaxWorkflowSize, "unset: the commands apply their default")
	require.Zero(t, c.DBTimeout, "unset: serve applies its default")
	require.Nil(t, c.Auth)
	require.True(t, c.BootstrapKey())
	var none *config.Config
	require.True(t, none.BootstrapKey(), "no config: the bootstrap key is on")
}

func TestTracingBlock(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("taskerd.hcl", []byte("listen = \"x\"\n"))
	require.NoError(t, err)
	require.Nil(t, c.Tracing, "no block: tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT says otherwise")
	c, err = config.Parse("taskerd.hcl", []byte("tracing {\n}\n"))
	require.NoError(t, err)
	require.Equal(t, &config.Tracing{}, c.Tracing, "an empty block turns tracing on, every setting from OTEL_*")
	c, err = config.Parse("taskerd.hcl", []byte("tracing {\n  endpoint = \"http://collector:4317\"\n  protocol = \"grpc\"\n  sample_ratio = 0.25\n}\n"))
	require.NoError(t, err)
	require.Equal(t, "http://collector:4317", c.Tracing.Endpoint)
	require.Equal(t, config.TracingGRPC, c.Tracing.Protocol)
	require.InDelta(t, 0.25, *c.Tracing.SampleRatio, 1e-9)
}

func TestAuthBootstrap(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("taskerd.hcl", []byte("auth {\n  bootstrap = false\n}\n"))
	require.NoError(t, err)
	require.False(t, c.BootstrapKey())
	c, err = config.Parse("taskerd.hcl", []byte("auth {\n  bootstrap = true\n}\n"))
	require.NoError(t, err)
	require.True(t, c.BootstrapKey())
	_, err = config.Parse("taskerd.hcl", []byte("auth {\n  bootstrap = \"no\"\n}\n"))
	require.ErrorContains(t, err, "taskerd.hcl:2:16: Unsuitable value type")
}

func TestErrorsNameFileAndLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown top-level key", "listen = \"x\"\nlisten_port = 8080\n",
			[]string{`taskerd.hcl:2:1: Unsupported argument`, `listen_port`}},
		{"unknown block", "\nserver {\n}\n", []string{`taskerd.hcl:2:1: Unsupported block type`}},
		{"unknown plugin key", "plugin \"p\" {\n  path = \"p\"\n  sha256 = \"" + hash + "\"\n  checksum = \"x\"\n}\n",
			[]string{`taskerd.hcl:4:3: Unsupported argument`, `checksum`}},
		{"sha256 required", "plugin \"p\" {\n  path = \"p\"\n}\n",
			[]string{`taskerd.hcl:1:1: Missing sha256`, `taskerd plugins hash --write`}},
		{"dev with authentication", "plugin \"p\" {\n  path = \"p\"\n  dev = true\n}\nauth {\n  mode = \"\"\n}\n",
			[]string{`taskerd.hcl:1:1: Dev plugin with authentication`, `at taskerd.hcl:5,1`}},
		{"dev with authenticators", "plugin \"p\" {\n  path = \"p\"\n  dev = true\n}\nplugin \"k\" {\n  path = \"k\"\n  kind = \"authenticator\"\n  sha256 = \"" + hash + "\"\n}\nauth {\n  authenticators = [\"k\"]\n}\n",
			[]string{`taskerd.hcl:1:1: Dev plugin with authentication`}},
		{"dev not a bool", "plugin \"p\" {\n  path = \"p\"\n  dev = \"yes\"\n}\n",
			[]string{`taskerd.hcl:3:10: Unsuitable value type`}},
		{"sha256 malformed", "plugin \"p\" {\n  path = \"p\"\n  sha256 = \"abc\"\n}\n",
			[]string{`taskerd.hcl:1:1: Invalid sha256`, `"abc"`}},
		{"bad kind", "plugin \"p\" {\n  path = \"p\"\n  sha256 = \"" + hash + "\"\n  kind = \"magic\"\n}\n",
			[]string{`taskerd.hcl:1:1: Invalid plugin kind`, `"magic"`}},
		{"bad max_concurrency", "plugin \"p\" {\n  path = \"p\"\n  sha256 = \"" + hash + "\"\n  max_concurrency = 0\n}\n",
			[]string{`Invalid max_concurrency`}},
		{"duplicate plugin", "plugin \"p\" {\n  path = \"p\"\n  sha256 = \"" + hash + "\"\n}\nplugin \"p\" {\n  path = \"q\"\n  sha256 = \"" + hash + "\"\n}\n",
			[]string{`taskerd.hcl:5:1: Duplicate plugin`, `Previous definition was at taskerd.hcl:1,1`}},
		{"builtin is reserved", "plugin \"builtin\" {\n  path = \"p\"\n  sha256 = \"" + hash + "\"\n}\n", []string{`Invalid plugin name`}},
		{"bad lease", "lease = \"soon\"\n", []string{`taskerd.hcl:1:9: Invalid lease`}},
		{"bad db_timeout", "\ndb_timeout = \"5\"\n", []string{`taskerd.hcl:2:14: Invalid db_timeout`, `such as "5s", not "5"`}},
		{"zero db_timeout", "db_timeout = \"0s\"\n", []string{`taskerd.hcl:1:14: Invalid db_timeout`}},
		{"bad workers", "workers = 0\n", []string{`taskerd.hcl:1:11: Invalid workers`}},
		{"small max_workflow_size", "max_workflow_size = 100\n", []string{`taskerd.hcl:1:21: Invalid max_workflow_size`, `at least 1024 bytes, not 100`}},
		{"max_workflow_size not a number", "max_workflow_size = \"4MiB\"\n", []string{`taskerd.hcl:1:22: Unsuitable value type`, `a number is required`}},
		{"workers not a number", "workers = \"many\"\n", []string{`taskerd.hcl:1:12: Unsuitable value type`}},
		{"config references a variable", "plugin \"p\" {\n  path = \"p\"\n  sha256 = \"" + hash + "\"\n  config = { key = var.secret }\n}\n",
			[]string{`taskerd.hcl:4:`, `Variables not allowed`}},
		{"unknown authenticator", "auth {\n  authenticators = [\"jwt\"]\n}\n", []string{`taskerd.hcl:1:1: Unknown authenticator`, `"jwt"`}},
		{"bad tracing endpoint", "tracing {\n  endpoint = \"localhost:4317\"\n}\n", []string{`taskerd.hcl:2:14: Invalid tracing endpoint`, `"localhost:4317"`}},
		{"bad tracing protocol", "tracing {\n  protocol = \"udp\"\n}\n", []string{`taskerd.hcl:2:14: Invalid tracing protocol`, `"grpc" or "http/protobuf"`}},
		{"bad tracing sample_ratio", "tracing {\n  sample_ratio = 1.5\n}\n", []string{`taskerd.hcl:2:18: Invalid tracing sample_ratio`}},
		{"unknown tracing key", "tracing {\n  exporter = \"otlp\"\n}\n", []string{`taskerd.hcl:2:3: Unsupported argument`}},
		{"duplicate tracing block", "tracing {\n}\ntracing {\n}\n", []string{`taskerd.hcl:3:1: Duplicate tracing block`}},
		{"duplicate auth block", "auth {\n}\n\nauth {\n}\n", []string{`taskerd.hcl:4:1: Duplicate auth block`, `Previous definition was at taskerd.hcl:1,1`}},
		{"duplicate policy block", "policy {\n}\npolicy {\n}\n", []string{`taskerd.hcl:3:1: Duplicate policy block`}},
		{"syntax error", "listen = \n", []string{`taskerd.hcl:1:`}},
		// 100,000 brackets would exhaust the parser's stack (issue 14,
		// item 3); the 99th is the 101st level.
		{"nested too deep", "\nplugin \"p\" {\n  path = \"p\"\n  sha256 = \"" + hash + "\"\n  config = { a = " + strings.Repeat("[", 100_000) + " }\n}\n",
			[]string{`taskerd.hcl:5:116: Nesting too deep`, `more than 100 levels`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse("taskerd.hcl", []byte(tt.src))
			require.Error(t, err)
			var ce *config.Error
			require.True(t, errors.As(err, &ce))
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.hcl"))
	require.ErrorContains(t, err, "reading config")
}

// dev = true: no sha256 needed (one given is not checked), allowed with no
// auth block or with auth mode none.
func TestDevPlugin(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		"plugin \"p\" {\n  path = \"p\"\n  dev = true\n}\n",
		"plugin \"p\" {\n  path = \"p\"\n  dev = true\n}\nauth {\n  mode = \"none\"\n}\n",
		"plugin \"p\" {\n  path = \"p\"\n  dev = true\n  sha256 = \"" + hash + "\"\n}\n",
	} {
		c, err := config.Parse(filepath.Join(t.TempDir(), "taskerd.hcl"), []byte(src))
		require.NoError(t, err, src)
		require.True(t, c.Plugins[0].Dev)
	}
	c, err := config.Parse("taskerd.hcl", []byte("plugin \"p\" {\n  path = \"p\"\n  sha256 = \""+hash+"\"\n}\n"))
	require.NoError(t, err)
	require.False(t, c.Plugins[0].Dev)
	require.Equal(t, 3, c.Plugins[0].SHA256Range.Start.Line)
	require.Equal(t, 12, c.Plugins[0].SHA256Range.Start.Column)
}

// A script plugin: command is the interpreter, path the script (relative
// to the file), args come after it.
func TestScriptPlugin(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("/etc/taskerd/taskerd.hcl", []byte(`
plugin "orders" {
  command = "node"
  path    = "plugins/orders/dist/main.js"
  args    = ["--max-old-space-size=256", "x"]
  sha256  = "`+hash+`"
}
plugin "local_node" {
  command = "runtime/bin/node"
  path    = "main.js"
  sha256  = "`+hash+`"
}
plugin "abs_node" {
  command = "/usr/local/bin/node"
  path    = "/srv/main.js"
  dev     = true
}
plugin "binary" {
  path   = "bin/binary"
  args   = ["serve"]
  sha256 = "`+hash+`"
}
`))
	require.NoError(t, err)
	require.Len(t, c.Plugins, 4)
	orders := c.Plugins[0]
	require.Equal(t, "node", orders.Command, "a bare name is looked up in PATH when the plugin starts")
	require.Equal(t, "/etc/taskerd/plugins/orders/dist/main.js", orders.Path)
	require.Equal(t, []string{"--max-old-space-size=256", "x"}, orders.Args)
	require.Equal(t, "/etc/taskerd/runtime/bin/node", c.Plugins[1].Command, "a relative path is the config file's")
	require.Nil(t, c.Plugins[1].Args)
	require.Equal(t, "/usr/local/bin/node", c.Plugins[2].Command)
	require.Empty(t, c.Plugins[3].Command, "no command: an executable")
	require.Equal(t, []string{"serve"}, c.Plugins[3].Args)
}

func TestScriptPluginErrors(t *testing.T) {
	t.Parallel()
	block := func(attrs string) string {
		return "plugin \"p\" {\n  path = \"main.js\"\n" + attrs + "}\n"
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"empty command", block("  command = \"\"\n  sha256 = \"" + hash + "\"\n"),
			[]string{`taskerd.hcl:3:13: Invalid plugin command`, `command is empty`}},
		{"blank command", block("  command = \"  \"\n  sha256 = \"" + hash + "\"\n"),
			[]string{`taskerd.hcl:3:13: Invalid plugin command`, `command is empty`}},
		{"arguments in command", block("  command = \"node --inspect\"\n  sha256 = \"" + hash + "\"\n"),
			[]string{`taskerd.hcl:3:13: Invalid plugin command`, `"node --inspect"`, `give its arguments in args`}},
		{"command not a string", block("  command = [\"node\"]\n  sha256 = \"" + hash + "\"\n"),
			[]string{`taskerd.hcl:3:13: Unsuitable value type`}},
		{"args not a list", block("  command = \"node\"\n  args = \"--inspect\"\n  sha256 = \"" + hash + "\"\n"),
			[]string{`taskerd.hcl:4:11: Unsuitable value type`, `list of string required`}},
		{"args with a null", block("  command = \"node\"\n  args = [null]\n  sha256 = \"" + hash + "\"\n"),
			[]string{`taskerd.hcl:4:10: Unsuitable value type`, `null value is not allowed`}},
		{"script sha256 required", block("  command = \"node\"\n"),
			[]string{`taskerd.hcl:1:1: Missing sha256`, `the SHA-256 of the script and its package-lock.json`, `taskerd plugins hash --write`}},
		{"script sha256 malformed", block("  command = \"node\"\n  sha256 = \"abc\"\n"),
			[]string{`taskerd.hcl:1:1: Invalid sha256`, `taskerd plugins hash --script PATH prints it`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse("taskerd.hcl", []byte(tt.src))
			var ce *config.Error
			require.True(t, errors.As(err, &ce), "got %v", err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}
