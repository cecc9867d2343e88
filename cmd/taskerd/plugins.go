package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/plugin/host"
)

// defaultConfig is the daemon config `taskerd plugins` reads by default.
const defaultConfig = "taskerd.hcl"

func newPluginsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List the configured plugins, or print a plugin's checksum",
	}
	cmd.AddCommand(newPluginsListCmd(), newPluginsHashCmd(), newPluginsConformanceCmd())
	return cmd
}

func newPluginsListCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "list [--config taskerd.hcl]",
		Short: "Print each configured plugin: path, checksum status and handlers",
		Long: `Read the daemon config and, for each plugin, print its name, kind, path (after
its command, for a script plugin), whether its SHA-256 (the binary's, or a
script plugin's script and lockfile's) matches the configured one, and (for
step-handler plugins whose checksum matches) the handlers it serves, learnt by
starting it and asking. A plugin whose checksum does not match is never
started.

Exit codes: 0 every plugin is usable; 1 at least one is not (a checksum that
does not match, a missing file, a step-handler plugin that cannot start).`,
		Example: "  taskerd plugins list --config /etc/taskerd/taskerd.hcl",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath)
			if err != nil {
				return usageErrorf("%s", err)
			}
			out := cmd.OutOrStdout()
			if len(cfg.Plugins) == 0 {
				fmt.Fprintf(out, "no plugins in %s\n", configPath)
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PLUGIN\tKIND\tPATH\tSHA256\tHANDLERS")
			bad := 0
			for _, p := range cfg.Plugins {
				status, handlers := inspectPlugin(cmd.Context(), p)
				// A plugin that does not start (say its interpreter is
				// missing) is no more usable than one with another hash.
				if !strings.HasPrefix(status, "ok") || strings.HasPrefix(handlers, cannotStart) {
					bad++
				}
				path := p.Path
				if p.Command != "" {
					path = p.Command + " " + p.Path
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, path, status, handlers)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if bad > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d plugins cannot be used", bad, len(cfg.Plugins))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", configDefault(), "daemon config; env TASKERD_CONFIG")
	return cmd
}

// configHere is ./taskerd.hcl when path is empty (no --config, no
// TASKERD_CONFIG) and that file exists: serve and keys, run in the
// directory taskerd init wrote, read the same config, and so the same
// database.
func configHere(path string) string {
	if path != "" {
		return path
	}
	if info, err := os.Stat(defaultConfig); err == nil && info.Mode().IsRegular() {
		return defaultConfig
	}
	return ""
}

// loadConfig reads the daemon config at path and makes its database the
// store's, unless --db or TASKERD_DATABASE says otherwise. An unreadable
// or invalid file is a usage error (exit 2).
func loadConfig(cmd *cobra.Command, path string, store *storeFlags) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageErrorf("%s", err)
	}
	if cfg.Database != "" && !cmd.Flags().Changed("db") && os.Getenv("TASKERD_DATABASE") == "" {
		store.db = cfg.Database
	}
	return cfg, nil
}

func configDefault() string {
	if v := os.Getenv("TASKERD_CONFIG"); v != "" {
		return v
	}
	return defaultConfig
}

// inspectPlugin checks one plugin's binary, or script and lockfile, and,
// for a step handler whose checksum matches, starts it to learn its
// handlers.
func inspectPlugin(ctx context.Context, p *config.Plugin) (status, handlers string) {
	sum, what := host.FileSHA256, "binary"
	if p.Command != "" {
		sum, what = host.ScriptSHA256, "script+lockfile"
	}
	actual, err := sum(p.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "missing", "-"
	case err != nil:
		return "unreadable: " + err.Error(), "-"
	case p.Dev:
		status = "ok (dev: not checked)"
	case actual != p.SHA256:
		return "MISMATCH (" + what + " is " + actual + ")", "-"
	default:
		status = "ok"
	}
	if p.Kind != config.KindStepHandler {
		return status, "(authenticator)"
	}
	h, err := host.Start(ctx, []host.Spec{specOf(p)}, host.Options{})
	if err != nil {
		return status, cannotStart + err.Error()
	}
	defer h.Close()
	var names []string
	for _, hi := range h.Plugins()[0].Handlers() {
		names = append(names, hi.Name)
	}
	return status, strings.Join(names, ", ")
}

// cannotStart begins the HANDLERS of a plugin that did not start.
const cannotStart = "cannot start: "

func newPluginsHashCmd() *cobra.Command {
	var write string
	var script bool
	cmd := &cobra.Command{
		Use:   "hash [--script] PATH | hash --write taskerd.hcl",
		Short: "Print the sha256 line of a plugin, or update every plugin's sha256 in a config",
		Long: `With PATH, print the sha256 line of that plugin executable, to paste into
its plugin block.

With --script PATH, PATH is the entry script of a script plugin (a plugin
block with a command, such as node): print the sha256 line of the script and
its lockfile, the package-lock.json beside the nearest package.json from the
script's directory upwards (docs/plugins.md says how it is computed). The
files it covers are named on stderr.

With --write FILE, compute the checksum of each plugin block of the daemon
config FILE (of the executable its path names, relative to FILE, or of the
script and its lockfile for a block with a command) and write it into the
block's sha256, adding the attribute when missing. The file is rewritten
in place, keeping its comments and layout, atomically (a temporary file
renamed over it, with the same mode); each change is printed. When an
executable or script is missing or unreadable, or a script has no lockfile,
every such plugin is listed and the file is left unchanged (exit 2).`,
		Example: `  go build -o plugins/orders ./examples/plugins/orders
  taskerd plugins hash plugins/orders
  taskerd plugins hash --script plugins/shipping/dist/main.js
  taskerd plugins hash --write taskerd.hcl`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("write") {
				if len(args) != 0 {
					return usageErrorf("plugins hash --write FILE takes no PATH; see 'taskerd plugins hash --help'")
				}
				if script {
					return usageErrorf("plugins hash --write FILE takes no --script: each block's command says whether it is a script; see 'taskerd plugins hash --help'")
				}
				return nil
			}
			if len(args) != 1 {
				return usageErrorf("plugins hash takes one PATH, or --write FILE; see 'taskerd plugins hash --help'")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("write") {
				return writeHashes(cmd.OutOrStdout(), write)
			}
			if script {
				path, lockfile, err := host.ScriptFiles(args[0])
				if err != nil {
					return usageErrorf("%s", err)
				}
				sum, err := host.ScriptSHA256(path)
				if err != nil {
					return usageErrorf("%s", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "sha256 = %q\n", sum)
				fmt.Fprintf(cmd.ErrOrStderr(), "(of the script %s and its lockfile %s)\n", path, lockfile)
				return nil
			}
			sum, err := host.FileSHA256(args[0])
			if err != nil {
				return usageErrorf("%s", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sha256 = %q\n", sum)
			return nil
		},
	}
	cmd.Flags().StringVar(&write, "write", "", "update the sha256 of every plugin block of this daemon config in place")
	cmd.Flags().BoolVar(&script, "script", false, "PATH is a script plugin's entry script: hash it with its package-lock.json")
	return cmd
}

func specOf(p *config.Plugin) host.Spec {
	return host.Spec{Name: p.Name, Path: p.Path, Command: p.Command, Args: p.Args, SHA256: p.SHA256, Dev: p.Dev, Config: p.Config, MaxConcurrency: p.MaxConcurrency}
}

// startPlugins starts the config's step-handler plugins. Authenticator
// plugins are for `taskerd serve`.
func startPlugins(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*host.Host, error) {
	var specs []host.Spec
	for _, p := range cfg.StepHandlers() {
		specs = append(specs, specOf(p))
	}
	return startSpecs(ctx, specs, cfg.Filename, host.Options{Logger: logger})
}

// startSpecs starts step-handler plugins; from names where they were
// configured, for the error.
func startSpecs(ctx context.Context, specs []host.Spec, from string, opts host.Options) (*host.Host, error) {
	h, err := host.Start(ctx, specs, opts)
	if err != nil {
		return nil, &exitError{code: 1, err: fmt.Errorf("starting plugins from %s: %w", from, err)}
	}
	return h, nil
}

// devPluginSpecs are the plugins of serve --dev-plugin-dir: every
// executable regular file of dir (not recursively), a step-handler plugin
// named after the file, started without checking its checksum.
func devPluginSpecs(dir string) ([]host.Spec, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, usageErrorf("--dev-plugin-dir: %s", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, usageErrorf("--dev-plugin-dir: %s", err)
	}
	var specs []host.Spec
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
			continue
		}
		if !devPluginNameRE.MatchString(e.Name()) || e.Name() == "builtin" {
			return nil, usageErrorf("--dev-plugin-dir: executable %s: a plugin is named after its file, which must be lower-case letters, digits and _, starting with a letter (and not builtin)",
				filepath.Join(dir, e.Name()))
		}
		specs = append(specs, host.Spec{Name: e.Name(), Path: filepath.Join(abs, e.Name()), Dev: true})
	}
	if len(specs) == 0 {
		return nil, usageErrorf("--dev-plugin-dir %s holds no executable file", dir)
	}
	return specs, nil
}

var devPluginNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
