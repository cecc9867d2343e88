package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/logging"
	"github.com/taskerd/taskerd/plugin/host"
)

// nodeFlags are the settings run and resume share: they both act as one
// engine node on the database.
type nodeFlags struct {
	storeFlags
	workers int
	lease   time.Duration
	json    bool
	plain   bool
	config  string

	// --log-level and --log-format, as given and as read by check.
	logLevelArg, logFormatArg string
	logLevel                  slog.Level
	logFormat                 string

	// cfg is the daemon config read from --config, or nil.
	cfg *config.Config
}

func (f *nodeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "config", os.Getenv("TASKERD_CONFIG"), "daemon config (taskerd.hcl): database, workers, lease, workflows and plugins; flags override it; env TASKERD_CONFIG")
	f.registerDB(cmd.Flags())
	cmd.Flags().BoolVar(&f.noMigrate, "no-migrate", false, "PostgreSQL: refuse a database whose schema is not up to date instead of migrating it (see taskerd migrate)")
	cmd.Flags().IntVar(&f.workers, "workers", engine.DefaultWorkers, "steps executed at once")
	cmd.Flags().DurationVar(&f.lease, "lease", engine.DefaultLeaseDuration, "lease of a running step; a step whose node stops heartbeating is recovered after this")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON document with the final state instead of progress lines")
	cmd.Flags().BoolVar(&f.plain, "plain", false, "print progress as a line per event even on a terminal (instead of the live view)")
	cmd.Flags().StringVar(&f.logLevelArg, "log-level", "info", "least severe log lines written to stderr: debug, info, warn or error (debug adds a line per handler start)")
	cmd.Flags().StringVar(&f.logFormatArg, "log-format", "", "log lines on stderr: json or text (default text when stderr is a terminal, json otherwise)")
}

// check reads --config, if any, and checks the flags. A setting given as a
// flag (or TASKERD_DATABASE for --db) wins over the config file.
func (f *nodeFlags) check(cmd *cobra.Command) error {
	if f.config != "" {
		cfg, err := loadConfig(cmd, f.config, &f.storeFlags)
		if err != nil {
			return err
		}
		f.cfg = cfg
		changed := cmd.Flags().Changed
		if cfg.Workers > 0 && !changed("workers") {
			f.workers = cfg.Workers
		}
		if cfg.Lease > 0 && !changed("lease") {
			f.lease = cfg.Lease
		}
	}
	var err error
	if f.logLevel, err = logging.ParseLevel(f.logLevelArg); err != nil {
		return usageErrorf("--log-level %s", err)
	}
	if f.logFormat, err = logging.ParseFormat(f.logFormatArg, cmd.ErrOrStderr()); err != nil {
		return usageErrorf("--log-format %s", err)
	}
	if f.workers < 1 {
		return usageErrorf("--workers must be at least 1, not %d", f.workers)
	}
	if f.lease < 300*time.Millisecond {
		return usageErrorf("--lease must be at least 300ms, not %s", f.lease)
	}
	return nil
}

func newRunCmd() *cobra.Command {
	var flags nodeFlags
	var load loadFlags
	var ref, contextArg string
	cmd := &cobra.Command{
		Use:   "run [FILE_OR_DIR...] [--config taskerd.hcl] [--workflow NAMESPACE/NAME[@VERSION]] [--context JSON|@file.json]",
		Short: "Create a task and run it to the end in this process",
		Long: `Load workflow definitions, create a task of one workflow and run the engine in
this process until the task is complete, in error or cancelled.

On a terminal, progress is a live view: each step's state, attempt and
elapsed time, updated in place under a progress bar. Elsewhere (a pipe, a
file), or with --plain, it is printed one line per event; --json prints one
JSON document at the end instead. Ctrl-C cancels the task (running steps are told to stop, every
step that has not finished becomes cancelled) and exits 1.

While it runs, the process is an engine node on the database: it also works on
any other unfinished task there.

With --config, the daemon config's plugins are started (and stopped at the
end), its database, workers and lease are used unless flags say otherwise, and
its workflows directory is loaded when no FILE_OR_DIR is given. Every loaded
workflow must then name only handlers that exist: built-ins or handlers of the
configured plugins.

Exit codes: 0 the task completed (or was resolved manually); 1 it ended in
error or was cancelled;
2 bad input (unknown workflow, invalid context, bad --db).`,
		Example: `  taskerd run --config examples/plugins/taskerd.hcl -w ecommerce/order_fulfillment \
    --context @examples/plugins/order.json      # scripts/order-fulfillment.sh builds the plugins and does this
  taskerd run workflows/ -w default/diamond --db sqlite::memory: --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && flags.config != "" {
				return nil // the config's workflows directory
			}
			return needPaths(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flags.check(cmd); err != nil {
				return err
			}
			if len(args) == 0 {
				if flags.cfg.Workflows == "" {
					return usageErrorf("run needs workflow files or directories, or a workflows setting in %s", flags.config)
				}
				args = []string{flags.cfg.Workflows}
			}
			taskContext, err := readContextArg(contextArg)
			if err != nil {
				return err
			}
			if err := load.check(cmd, flags.cfg); err != nil {
				return err
			}
			catalog, err := loadWorkflows(cmd.ErrOrStderr(), args, load.maxSize)
			if err != nil {
				return err
			}
			wf, err := pickWorkflow(catalog, ref)
			if err != nil {
				return err
			}
			view, stderr := nodeView(cmd, flags)
			if view != nil {
				defer view.Close()
			}
			n, err := startNode(cmd.Context(), flags, catalog, stderr)
			if err != nil {
				return err
			}
			defer n.close()
			if err := checkHandlers(wf, n.eng.Registry()); err != nil {
				return err
			}
			task, _, err := n.eng.CreateTask(cmd.Context(), engine.CreateRequest{
				Workflow:     wf.ID(),
				Context:      taskContext,
				Initiator:    "taskerd run",
				SourceSystem: "cli",
			})
			if err != nil {
				return createError(err)
			}
			if !flags.json {
				fmt.Fprintf(cmd.OutOrStdout(), "task %d created: %s, %d steps\n", task.ID, wf.ID(), len(wf.Steps))
			}
			return n.follow(cmd.Context(), task.ID, cmd.OutOrStdout(), stderr, flags.json, view)
		},
	}
	flags.register(cmd)
	load.register(cmd)
	cmd.Flags().StringVarP(&ref, "workflow", "w", "", "workflow to run, NAMESPACE/NAME[@VERSION] (may be left out when the paths hold one workflow)")
	cmd.Flags().StringVar(&contextArg, "context", "", "task context: a JSON object, or @FILE to read it from a file (default {})")
	return cmd
}

// readContextArg reads --context: inline JSON or @file.
func readContextArg(arg string) (json.RawMessage, error) {
	return readJSONArg("--context", arg)
}

// readJSONArg reads a flag holding a JSON object, inline or @file. An
// object not every backend can store (bytes that are not UTF-8, a NUL
// character, an unpaired surrogate, even escaped) is refused here, with
// the flag's name, rather than "fixed" on the way to the server.
func readJSONArg(flag, arg string) (json.RawMessage, error) {
	if arg == "" {
		return nil, nil
	}
	src := []byte(arg)
	if path, ok := strings.CutPrefix(arg, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, usageErrorf("%s: %s", flag, err)
		}
		src = b
	}
	var obj map[string]any
	if err := json.Unmarshal(src, &obj); err != nil || obj == nil {
		return nil, usageErrorf("%s must be a JSON object: %s", flag, jsonProblem(err))
	}
	if err := backends.CheckJSON(src); err != nil {
		return nil, usageErrorf("%s cannot be stored: %s (JSON text must be UTF-8, with no NUL character and no unpaired surrogate, even escaped)",
			flag, strings.TrimPrefix(err.Error(), backends.ErrUnstorable.Error()+": "))
	}
	return src, nil
}

func jsonProblem(err error) string {
	if err == nil {
		return "got null"
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("%s (at byte %d)", syn, syn.Offset)
	}
	return err.Error()
}

// createError turns CreateTask's refusals into one readable line, exit 2.
func createError(err error) error {
	var cve *engine.ContextValidationError
	if errors.As(err, &cve) && errors.Is(err, backends.ErrUnstorable) && len(cve.Violations) == 1 {
		return usageErrorf("%s", cve.Violations[0].Message)
	}
	if errors.As(err, &cve) {
		var parts []string
		for _, v := range cve.Violations {
			ptr := v.Pointer
			if ptr == "" {
				ptr = "/"
			}
			parts = append(parts, ptr+": "+v.Message)
		}
		return usageErrorf("the context does not match %s's context_schema: %s", cve.Workflow, strings.Join(parts, "; "))
	}
	var (
		bypass *engine.BypassError
		reqErr *engine.RequestError
	)
	if errors.Is(err, engine.ErrUnknownWorkflow) || errors.As(err, &bypass) || errors.As(err, &reqErr) {
		return usageErrorf("%s", err)
	}
	return &exitError{code: 1, err: fmt.Errorf("creating the task: %w", err)}
}

// checkHandlers refuses the workflow to run when it names a handler this
// process cannot run, before any task exists. Only that workflow: the
// others of the paths may be for plugins this run does not load (as serve
// loads them as unavailable rather than refusing to start).
func checkHandlers(wf *definition.Workflow, reg *engine.Registry) error {
	for _, s := range wf.Steps {
		if _, ok := reg.Lookup(s.Handler.String()); !ok {
			return usageErrorf("%s", host.UnknownHandlerError(wf, s, reg.Names()))
		}
	}
	return nil
}
