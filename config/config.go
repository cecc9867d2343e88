// Package config reads taskerd's daemon configuration, taskerd.hcl
// (docs/configuration.md): listen address, database, workflow
// directory, node id, workers, lease, the API's database deadline, plugins,
// auth, policy, tracing, webhooks and the events bus (events.go), the
// cluster and retention (cluster.go) and the GraphQL limits (graphql.go).
//
// It is its own package, rather than part of cmd/taskerd, because more
// than one command reads it (run, serve, plugins list) and because its
// rules are worth testing on their own: every unknown key is an error with
// file:line, plugin paths are relative to the file, a plugin without a
// sha256 is refused (unless dev = true, itself refused beside an auth
// block that is not mode "none"). It only parses and checks; it starts nothing. It is
// separate from definition/ because workflows and the daemon are
// configured by different people at different times.
package config

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/taskerd/taskerd/internal/hclnest"
)

// MinWorkflowSize is the least max_workflow_size accepted, in bytes.
const MinWorkflowSize = 1024

// maxNesting is how deeply the file may nest brackets, strings and
// operators, as for workflow files (definition.MaxNesting).
const maxNesting = 100

// Plugin kinds.
const (
	KindStepHandler   = "step_handler"
	KindAuthenticator = "authenticator"
)

// Config is a parsed taskerd.hcl. Fields left out of the file are zero;
// the commands apply their defaults (and their flags override the file).
type Config struct {
	// Filename is the file it was read from.
	Filename string
	Listen   string
	// Database is a DSN: sqlite:PATH or postgres://...
	Database string
	// Workflows is the workflow directory, relative paths resolved
	// against the config file's directory.
	Workflows string
	NodeID    string
	Workers   int
	Lease     time.Duration
	// DBTimeout is the deadline of an API request's database calls
	// (db_timeout; serve).
	DBTimeout time.Duration
	// MaxWorkflowSize bounds a workflow file, in bytes
	// (max_workflow_size; 0: the commands' default).
	MaxWorkflowSize int64
	Plugins         []*Plugin
	Auth            *Auth
	Policy          *Policy
	// Webhooks and Events send the event log out (config/events.go).
	Webhooks []*Webhook
	Events   *Events
	// Tracing is the tracing block (nil without one): with it, serve
	// exports OpenTelemetry traces (docs/tracing.md).
	Tracing *Tracing
	// Cluster and Retention (config/cluster.go; nil without the block).
	Cluster   *Cluster
	Retention *Retention
	// GraphQL is the graphql block (config/graphql.go; nil without one):
	// serve's limits of /v1/graphql.
	GraphQL *GraphQL
}

// Tracing protocols.
const (
	TracingGRPC = "grpc"
	TracingHTTP = "http/protobuf"
)

// Tracing is the `tracing` block. Its presence turns tracing on; a field
// left out is taken from the standard OTEL_* environment variables.
type Tracing struct {
	// Endpoint is the OTLP collector's base URL (http:// or https://), as
	// OTEL_EXPORTER_OTLP_ENDPOINT; "" for the environment's or the default.
	Endpoint string
	// Protocol is TracingGRPC or TracingHTTP; "" for the environment's or
	// http/protobuf.
	Protocol string
	// SampleRatio is the share of new traces sampled, 0 to 1; nil for the
	// environment's OTEL_TRACES_SAMPLER, or 1.
	SampleRatio *float64
}

// Plugin is one `plugin "NAME" { ... }` block.
type Plugin struct {
	Name string
	// Path is the executable, or a script plugin's entry script, resolved
	// against the config file's directory and made absolute.
	Path string
	// Command, when set (command = "node"), makes the plugin a script
	// plugin: the process is Command run with Path and then Args as its
	// arguments. A bare name is looked up in the daemon's PATH when the
	// plugin starts; a path is resolved against the config file's
	// directory and made absolute.
	Command string
	// Args are the process's arguments (after the script, for a script
	// plugin); the checksum does not cover them.
	Args []string
	// SHA256 is the expected hex SHA-256 of the executable or, for a
	// script plugin, of its script and lockfile (host.ScriptSHA256), lower
	// case (may be empty when Dev).
	SHA256 string
	// Dev (dev = true) skips the checksum: for a plugin under development,
	// rebuilt again and again. Refused in a file whose auth block asks for
	// anything but mode "none"; serve also refuses it unless its API runs
	// with auth mode none.
	Dev bool
	// SHA256Range is where the sha256 value is written (nil without one),
	// for `taskerd plugins hash --write`.
	SHA256Range *hcl.Range
	// Kind is step_handler (default) or authenticator.
	Kind string
	// Config is the plugin's config as JSON ({} when the block has none).
	// It may hold secrets: never log it.
	Config json.RawMessage
	// MaxConcurrency bounds the calls in flight into the plugin; 0 means
	// the host's default.
	MaxConcurrency int
	// DeclRange is where the block is written.
	DeclRange hcl.Range
}

// Auth is the `auth` block.
type Auth struct {
	// Mode "none" runs the API without authentication (explicitly only).
	Mode           string
	Authenticators []string
	// Bootstrap false (bootstrap = false) turns the bootstrap admin key
	// off: it is neither created nor accepted. Nil means on.
	Bootstrap *bool
}

// BootstrapKey reports whether serve uses the bootstrap admin key: yes
// unless auth { bootstrap = false }.
func (c *Config) BootstrapKey() bool {
	return c == nil || c.Auth == nil || c.Auth.Bootstrap == nil || *c.Auth.Bootstrap
}

// Policy is the `policy` block.
type Policy struct {
	Dir         string
	DecisionLog string
}

// StepHandlers returns the plugins of kind step_handler.
func (c *Config) StepHandlers() []*Plugin {
	var ps []*Plugin
	for _, p := range c.Plugins {
		if p.Kind == KindStepHandler {
			ps = append(ps, p)
		}
	}
	return ps
}

// AuthenticatorPlugins returns the plugins of kind authenticator, in file
// order (the chain's order is Auth.Authenticators).
func (c *Config) AuthenticatorPlugins() []*Plugin {
	var ps []*Plugin
	for _, p := range c.Plugins {
		if p.Kind == KindAuthenticator {
			ps = append(ps, p)
		}
	}
	return ps
}

// Error is a configuration that cannot be used: one line per problem,
// each starting with file:line:column.
type Error struct {
	Diagnostics hcl.Diagnostics
	// Files are the parsed sources, for hcl.NewDiagnosticTextWriter.
	Files map[string]*hcl.File
}

func (e *Error) Error() string {
	var lines []string
	for _, d := range e.Diagnostics {
		if d.Severity != hcl.DiagError {
			continue
		}
		line := d.Summary
		if d.Detail != "" {
			line += ": " + d.Detail
		}
		if d.Subject != nil {
			line = fmt.Sprintf("%s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, line)
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// Load reads and checks the config file at path.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, src)
}

// Parse checks the config src, read from filename (relative paths inside
// are resolved against filename's directory).
func Parse(filename string, src []byte) (*Config, error) {
	// A deeply nested file would exhaust the HCL parser's stack.
	if diags := hclnest.Check(filename, src, maxNesting); diags.HasErrors() {
		return nil, &Error{Diagnostics: diags}
	}
	p := hclparse.NewParser()
	f, diags := p.ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, &Error{Diagnostics: diags, Files: p.Files()}
	}
	c, more := decode(filename, f.Body)
	diags = append(diags, more...)
	if diags.HasErrors() {
		return nil, &Error{Diagnostics: diags, Files: p.Files()}
	}
	return c, nil
}

var rootSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "listen"}, {Name: "database"}, {Name: "workflows"}, {Name: "node_id"}, {Name: "workers"}, {Name: "lease"},
		{Name: "db_timeout"}, {Name: "max_workflow_size"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "plugin", LabelNames: []string{"name"}},
		{Type: "auth"},
		{Type: "policy"},
		{Type: "webhook", LabelNames: []string{"name"}},
		{Type: "events"},
		{Type: "tracing"},
		{Type: "cluster"},
		{Type: "retention"},
		{Type: "graphql"},
	},
}

type pluginBody struct {
	Path           string         `hcl:"path"`
	Command        *string        `hcl:"command,optional"`
	Args           []string       `hcl:"args,optional"`
	SHA256         *string        `hcl:"sha256,optional"`
	Dev            *bool          `hcl:"dev,optional"`
	Kind           *string        `hcl:"kind,optional"`
	Config         hcl.Expression `hcl:"config,optional"`
	MaxConcurrency *int           `hcl:"max_concurrency,optional"`
}

type authBody struct {
	Mode           *string  `hcl:"mode,optional"`
	Authenticators []string `hcl:"authenticators,optional"`
	Bootstrap      *bool    `hcl:"bootstrap,optional"`
}

type policyBody struct {
	Dir         *string `hcl:"dir,optional"`
	DecisionLog *string `hcl:"decision_log,optional"`
}

type tracingBody struct {
	Endpoint    *string  `hcl:"endpoint,optional"`
	Protocol    *string  `hcl:"protocol,optional"`
	SampleRatio *float64 `hcl:"sample_ratio,optional"`
}

var (
	pluginNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func decode(filename string, body hcl.Body) (*Config, hcl.Diagnostics) {
	dir := filepath.Dir(filename)
	c := &Config{Filename: filename}
	content, diags := body.Content(rootSchema)

	str := func(name string, dst *string) {
		if a, ok := content.Attributes[name]; ok {
			diags = append(diags, gohcl.DecodeExpression(a.Expr, nil, dst)...)
		}
	}
	str("listen", &c.Listen)
	str("database", &c.Database)
	str("workflows", &c.Workflows)
	str("node_id", &c.NodeID)
	if c.Workflows != "" && !filepath.IsAbs(c.Workflows) {
		c.Workflows = filepath.Join(dir, c.Workflows)
	}
	if a, ok := content.Attributes["workers"]; ok {
		diags = append(diags, gohcl.DecodeExpression(a.Expr, nil, &c.Workers)...)
		if !diags.HasErrors() && c.Workers < 1 {
			diags = append(diags, errorAt(a.Expr.Range(), "Invalid workers", fmt.Sprintf("workers must be at least 1, not %d.", c.Workers)))
		}
	}
	if a, ok := content.Attributes["max_workflow_size"]; ok {
		d := gohcl.DecodeExpression(a.Expr, nil, &c.MaxWorkflowSize)
		diags = append(diags, d...)
		if !d.HasErrors() && c.MaxWorkflowSize < MinWorkflowSize {
			diags = append(diags, errorAt(a.Expr.Range(), "Invalid max_workflow_size",
				fmt.Sprintf("max_workflow_size must be at least %d bytes, not %d.", MinWorkflowSize, c.MaxWorkflowSize)))
		}
	}
	duration := func(name, example string, dst *time.Duration) {
		a, ok := content.Attributes[name]
		if !ok {
			return
		}
		var s string
		if d := gohcl.DecodeExpression(a.Expr, nil, &s); d.HasErrors() {
			diags = append(diags, d...)
		} else if dur, err := time.ParseDuration(s); err != nil || dur <= 0 {
			diags = append(diags, errorAt(a.Expr.Range(), "Invalid "+name, fmt.Sprintf("%s must be a positive duration such as %q, not %q.", name, example, s)))
		} else {
			*dst = dur
		}
	}
	duration("lease", "30s", &c.Lease)
	duration("db_timeout", "5s", &c.DBTimeout)

	seen := map[string]*hcl.Block{}
	for _, b := range content.Blocks {
		if singleBlocks[b.Type] {
			if prev, dup := seen[b.Type]; dup {
				diags = append(diags, errorAt(b.DefRange, "Duplicate "+b.Type+" block",
					fmt.Sprintf("Only one %s block is allowed. Previous definition was at %s.", b.Type, prev.DefRange)))
				continue
			}
			seen[b.Type] = b
		}
		switch b.Type {
		case "plugin":
			p, d := decodePlugin(dir, b)
			diags = append(diags, d...)
			if prev, dup := seen["plugin."+b.Labels[0]]; dup {
				diags = append(diags, errorAt(b.DefRange, "Duplicate plugin",
					fmt.Sprintf("Plugin %q is configured twice. Previous definition was at %s.", b.Labels[0], prev.DefRange)))
				continue
			}
			seen["plugin."+b.Labels[0]] = b
			if p != nil {
				c.Plugins = append(c.Plugins, p)
			}
		case "webhook":
			if prev, dup := seen["webhook."+b.Labels[0]]; dup {
				diags = append(diags, errorAt(b.DefRange, "Duplicate webhook",
					fmt.Sprintf("Webhook %q is configured twice. Previous definition was at %s.", b.Labels[0], prev.DefRange)))
				continue
			}
			seen["webhook."+b.Labels[0]] = b
			w, d := decodeWebhook(dir, b)
			diags = append(diags, d...)
			if w != nil {
				c.Webhooks = append(c.Webhooks, w)
			}
		case "events":
			e, d := decodeEvents(b)
			diags = append(diags, d...)
			c.Events = e
		case "tracing":
			t, d := decodeTracing(b)
			diags = append(diags, d...)
			c.Tracing = t
		case "graphql":
			g, d := decodeGraphQL(b)
			diags = append(diags, d...)
			c.GraphQL = g
		case "cluster", "retention":
			if b.Type == "cluster" {
				cl, d := decodeCluster(b)
				diags = append(diags, d...)
				c.Cluster = cl
			} else {
				r, d := decodeRetention(b)
				diags = append(diags, d...)
				c.Retention = r
			}
		case "auth", "policy":
			if b.Type == "auth" {
				var ab authBody
				diags = append(diags, gohcl.DecodeBody(b.Body, nil, &ab)...)
				c.Auth = &Auth{Authenticators: ab.Authenticators, Bootstrap: ab.Bootstrap}
				if ab.Mode != nil {
					c.Auth.Mode = *ab.Mode
				}
			} else {
				var pb policyBody
				diags = append(diags, gohcl.DecodeBody(b.Body, nil, &pb)...)
				c.Policy = &Policy{}
				if pb.Dir != nil {
					c.Policy.Dir = *pb.Dir
					if !filepath.IsAbs(c.Policy.Dir) {
						c.Policy.Dir = filepath.Join(dir, c.Policy.Dir)
					}
				}
				if pb.DecisionLog != nil {
					c.Policy.DecisionLog = *pb.DecisionLog
				}
			}
		}
	}
	// A plugin whose checksum is not checked may be any program: never
	// behind an API that is meant to be protected.
	if c.Auth != nil && c.Auth.Mode != "none" {
		for _, p := range c.Plugins {
			if p.Dev {
				diags = append(diags, errorAt(p.DeclRange, "Dev plugin with authentication",
					fmt.Sprintf("Plugin %q has dev = true, which skips its checksum; that is for development only and refused in a file whose auth block is not mode = \"none\" (at %s). Remove dev = true and set sha256 (taskerd plugins hash --write FILE).", p.Name, seen["auth"].DefRange)))
			}
		}
	}
	if c.Auth != nil {
		for _, name := range c.Auth.Authenticators {
			var p *Plugin
			for _, q := range c.Plugins {
				if q.Name == name {
					p = q
				}
			}
			if p == nil || p.Kind != KindAuthenticator {
				diags = append(diags, errorAt(seen["auth"].DefRange, "Unknown authenticator",
					fmt.Sprintf("auth.authenticators names %q, which is not a plugin of kind %q in this file.", name, KindAuthenticator)))
			}
		}
	}
	return c, diags
}

func decodeTracing(b *hcl.Block) (*Tracing, hcl.Diagnostics) {
	var tb tracingBody
	diags := gohcl.DecodeBody(b.Body, nil, &tb)
	if diags.HasErrors() {
		return nil, diags
	}
	t := &Tracing{SampleRatio: tb.SampleRatio}
	attrs, _ := b.Body.JustAttributes()
	at := func(name string) hcl.Range {
		if a := attrs[name]; a != nil {
			return a.Expr.Range()
		}
		return b.DefRange
	}
	if tb.Endpoint != nil {
		t.Endpoint = *tb.Endpoint
		u, err := url.Parse(t.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			diags = append(diags, errorAt(at("endpoint"), "Invalid tracing endpoint",
				fmt.Sprintf("tracing.endpoint must be the collector's http:// or https:// URL, such as \"http://localhost:4318\", not %q.", t.Endpoint)))
		}
	}
	if tb.Protocol != nil {
		t.Protocol = *tb.Protocol
		if t.Protocol != TracingGRPC && t.Protocol != TracingHTTP {
			diags = append(diags, errorAt(at("protocol"), "Invalid tracing protocol",
				fmt.Sprintf("tracing.protocol must be %q or %q, not %q.", TracingGRPC, TracingHTTP, t.Protocol)))
		}
	}
	if r := t.SampleRatio; r != nil && !(*r >= 0 && *r <= 1) {
		diags = append(diags, errorAt(at("sample_ratio"), "Invalid tracing sample_ratio",
			fmt.Sprintf("tracing.sample_ratio must be a number from 0 to 1, not %v.", *r)))
	}
	return t, diags
}

func decodePlugin(dir string, b *hcl.Block) (*Plugin, hcl.Diagnostics) {
	name := b.Labels[0]
	var pb pluginBody
	diags := gohcl.DecodeBody(b.Body, nil, &pb)
	if diags.HasErrors() {
		return nil, diags
	}
	p := &Plugin{Name: name, Path: pb.Path, Kind: KindStepHandler, DeclRange: b.DefRange}
	if pb.SHA256 != nil {
		p.SHA256 = strings.ToLower(*pb.SHA256)
		if attrs, _ := b.Body.JustAttributes(); attrs["sha256"] != nil {
			p.SHA256Range = attrs["sha256"].Expr.Range().Ptr()
		}
	}
	if pb.Dev != nil {
		p.Dev = *pb.Dev
	}
	p.Args = pb.Args
	if pb.Command != nil {
		at := b.DefRange
		if attrs, _ := b.Body.JustAttributes(); attrs["command"] != nil {
			at = attrs["command"].Expr.Range()
		}
		cmd, d := pluginCommand(dir, name, *pb.Command, at)
		diags = append(diags, d...)
		p.Command = cmd
	}
	// What the checksum is of, and the command that prints it, for errors.
	sumOf, hashCmd := "the executable's SHA-256", "taskerd plugins hash PATH"
	if p.Command != "" {
		sumOf, hashCmd = "the SHA-256 of the script and its package-lock.json", "taskerd plugins hash --script PATH"
	}
	if !pluginNameRE.MatchString(name) || name == "builtin" {
		diags = append(diags, errorAt(b.LabelRanges[0], "Invalid plugin name",
			fmt.Sprintf("Plugin name %q: use lower-case letters, digits and _, starting with a letter (and not \"builtin\", which names taskerd's own handlers).", name)))
	}
	if p.Path == "" {
		diags = append(diags, errorAt(b.DefRange, "Invalid plugin path", fmt.Sprintf("Plugin %q has an empty path.", name)))
	} else {
		// Absolute, so that exec never searches PATH for a bare name.
		if !filepath.IsAbs(p.Path) {
			p.Path = filepath.Join(dir, p.Path)
		}
		if abs, err := filepath.Abs(p.Path); err == nil {
			p.Path = abs
		}
	}
	switch {
	case p.SHA256 == "" && p.Dev:
		// A dev plugin's checksum is not checked: none is needed.
	case pb.SHA256 == nil:
		diags = append(diags, errorAt(b.DefRange, "Missing sha256",
			fmt.Sprintf("Plugin %q has no sha256: write the 64 hex digits of %s (taskerd plugins hash --write FILE fills them in), or dev = true while developing it.", name, sumOf)))
	case !sha256RE.MatchString(p.SHA256):
		diags = append(diags, errorAt(b.DefRange, "Invalid sha256",
			fmt.Sprintf("Plugin %q: sha256 must be the 64 hex digits of %s (%s prints it), not %q.", name, sumOf, hashCmd, *pb.SHA256)))
	}
	if pb.Kind != nil {
		p.Kind = *pb.Kind
		if p.Kind != KindStepHandler && p.Kind != KindAuthenticator {
			diags = append(diags, errorAt(b.DefRange, "Invalid plugin kind",
				fmt.Sprintf("Plugin %q: kind must be %q or %q, not %q.", name, KindStepHandler, KindAuthenticator, p.Kind)))
		}
	}
	if pb.MaxConcurrency != nil {
		p.MaxConcurrency = *pb.MaxConcurrency
		if p.MaxConcurrency < 1 {
			diags = append(diags, errorAt(b.DefRange, "Invalid max_concurrency",
				fmt.Sprintf("Plugin %q: max_concurrency must be at least 1, not %d.", name, p.MaxConcurrency)))
		}
	}
	cfg, d := exprJSON(pb.Config)
	diags = append(diags, d...)
	p.Config = cfg
	return p, diags
}

// pluginCommand checks a plugin's command (at r in the file): one program,
// a bare name for PATH or a path, relative ones resolved against dir.
func pluginCommand(dir, name, cmd string, r hcl.Range) (string, hcl.Diagnostics) {
	bad := func(why string) (string, hcl.Diagnostics) {
		return "", hcl.Diagnostics{errorAt(r, "Invalid plugin command", fmt.Sprintf("Plugin %q: %s", name, why))}
	}
	switch {
	case strings.TrimSpace(cmd) == "":
		return bad("command is empty: name the interpreter that runs the script (command = \"node\"), or leave command out for a plugin that is an executable.")
	case strings.ContainsRune(cmd, 0):
		return bad(fmt.Sprintf("command %q holds a NUL byte.", cmd))
	}
	if !strings.ContainsRune(cmd, '/') && !strings.ContainsRune(cmd, filepath.Separator) {
		// A name for PATH: spaces mean arguments were written into it.
		if strings.ContainsAny(cmd, " \t\n\r") {
			return bad(fmt.Sprintf("command %q is one program's name or path; give its arguments in args (the script is path).", cmd))
		}
		return cmd, nil
	}
	if !filepath.IsAbs(cmd) {
		cmd = filepath.Join(dir, cmd)
	}
	if abs, err := filepath.Abs(cmd); err == nil {
		cmd = abs
	}
	return cmd, nil
}

// exprJSON evaluates an HCL value (no variables or functions) to JSON; a
// missing or null value is {}.
func exprJSON(expr hcl.Expression) (json.RawMessage, hcl.Diagnostics) {
	if expr == nil {
		return json.RawMessage("{}"), nil
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() {
		return nil, diags
	}
	if v.IsNull() {
		return json.RawMessage("{}"), nil
	}
	if !v.IsWhollyKnown() {
		return nil, hcl.Diagnostics{errorAt(expr.Range(), "Invalid config", "The config must be a constant value.")}
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return nil, hcl.Diagnostics{errorAt(expr.Range(), "Invalid config", err.Error())}
	}
	return b, nil
}

func errorAt(r hcl.Range, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()}
}

// singleBlocks are the blocks a config file may hold once.
var singleBlocks = map[string]bool{
	"events": true, "tracing": true, "graphql": true, "cluster": true, "retention": true, "auth": true, "policy": true,
}
