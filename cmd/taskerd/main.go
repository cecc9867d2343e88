// Command taskerd is the taskerd CLI and daemon: one file per subcommand.
//
// Exit codes are part of the interface: 0 success, 1 the command ran and the
// answer is "no" (invalid workflows, a failed task), 2 the command could not
// run as asked (bad flags or arguments, unreadable paths, unknown workflow).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries a command's exit code. A nil err means the command has
// already said everything it had to say.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func usageErrorf(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// run executes the CLI and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "taskerd: %s\n", ee.err)
		}
		return ee.code
	}
	// Everything else comes from cobra itself: unknown commands or flags,
	// wrong number of arguments.
	fmt.Fprintf(stderr, "taskerd: %s\nRun 'taskerd --help' for usage.\n", err)
	return 2
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "taskerd",
		Short: "Workflow orchestration: DAGs of steps defined in HCL, run with retries and backoff",
		Long: `taskerd runs workflows: DAGs of steps described in HCL files. Each step runs
when its dependencies are complete; failed steps retry with exponential backoff.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       readBuildVersion().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf("%s; see 'taskerd %s --help'", err, cmd.Name())
	})
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newValidateCmd(), newGraphCmd(), newRunCmd(), newResumeCmd(), newMigrateCmd(), newPluginsCmd(), newTaskCmd(), newSchedulesCmd(), newServeCmd(), newPolicyCmd(), newVersionCmd(), newInitCmd(), newKeysCmd(), newNodesCmd(), newWebhooksCmd(), newBenchCmd(), newBenchPluginCmd())
	return root
}
