package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/plugin/conformance"
)

func newPluginsConformanceCmd() *cobra.Command {
	var (
		o               conformance.Options
		config, context string
		envs            []string
	)
	cmd := &cobra.Command{
		Use:   "conformance PATH [-- ARGS...]",
		Short: "Check a plugin executable (or script) against taskerd's plugin protocol",
		Long: `Start the step-handler plugin at PATH as taskerd does (go-plugin environment,
AutoMTLS, no inherited environment) and check each rule of the protocol
(docs/plugin-protocol.md), printing one line per check: PASS, FAIL, WARN (taskerd
copes, at a cost the line says) or SKIP, with the reason. ARGS after -- are
passed to the plugin. With --command, PATH is a script run by that interpreter
(--command node, PATH plugin.js).

With --handler, that handler is also executed (with --context as the task
context), given a deadline, and cancelled in flight.

Exit codes: 0 every check passed (warnings allowed); 1 at least one failed;
2 bad arguments.`,
		Example: `  taskerd plugins conformance plugins/orders --handler validate_cart --context @order.json
  taskerd plugins conformance --command node plugins/hello.js --config '{"greeting":"hi"}'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() == 0 || len(args) == 0 {
				return usageErrorf("plugins conformance takes a PATH (then -- and the plugin's arguments); see 'taskerd plugins conformance --help'")
			}
			if d := cmd.ArgsLenAtDash(); d > 1 || (d < 0 && len(args) > 1) {
				return usageErrorf("plugins conformance takes one PATH; put the plugin's arguments after --")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Path, o.Args = args[0], args[1:]
			o.Env = envs
			cfg := []byte(config)
			if path, ok := strings.CutPrefix(config, "@"); ok {
				b, err := os.ReadFile(path)
				if err != nil {
					return usageErrorf("--config: %s", err)
				}
				cfg = b
			}
			if !json.Valid(cfg) {
				return usageErrorf("--config %q is not valid JSON", config)
			}
			o.Config = cfg
			var err error
			if o.Context, err = readJSONArg("--context", context); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var rep *conformance.Report
			// A Ctrl-C ends the checks and kills the plugin's processes
			// (they run in a process group of their own).
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err = conformance.Run(ctx, o, func(r conformance.Result) { fmt.Fprintln(out, r) })
			if err != nil {
				return usageErrorf("%s", err)
			}
			if ctx.Err() != nil {
				return &exitError{code: 1, err: fmt.Errorf("interrupted; the plugin's processes were killed")}
			}
			fmt.Fprintln(out, rep.Summary())
			if n := rep.Failed(); n > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%s fails %d of %d checks of the plugin protocol", o.Path, n, len(rep.Results))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Command, "command", "", "interpreter that runs PATH (node, python3); looked up in PATH")
	f.StringVar(&config, "config", "{}", "plugin config sent with Configure: JSON, or @file")
	f.StringVar(&o.Handler, "handler", "", "a handler to execute, give a deadline and cancel")
	f.StringVar(&context, "context", "{}", "task context of the handler's Execute: a JSON object, or @file")
	f.StringArrayVar(&envs, "env", nil, "KEY=VALUE added to the plugin's environment (repeatable); nothing else is inherited")
	f.DurationVar(&o.Timeout, "timeout", conformance.DefaultTimeout, "bound on the handshake and on each call")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", conformance.DefaultShutdownTimeout, "bound on the exit after Shutdown (taskerd waits 2s, then kills)")
	return cmd
}
