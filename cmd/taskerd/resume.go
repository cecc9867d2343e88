package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
)

func newResumeCmd() *cobra.Command {
	var flags nodeFlags
	cmd := &cobra.Command{
		Use:   "resume TASK_ID [--db DSN] [--config taskerd.hcl]",
		Short: "Continue a task left unfinished by a stopped or killed process",
		Long: `Run the engine in this process until the task is complete, in error or
cancelled. Steps the dead process was running are recovered once their leases
expire (--lease of that process, 30s by default): they fail with kind
lease_expired, their attempt counted, and are retried under the usual rules.
Steps that completed are not run again.

Steps carry their handler and config in the database, so resume needs no
workflow files; steps run by plugins need the plugins, from --config. Exit codes are those of run.`,
		Example: "  taskerd resume 42 --db sqlite:taskerd.db",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("resume takes one TASK_ID; see 'taskerd resume --help'")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flags.check(cmd); err != nil {
				return err
			}
			taskID, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || taskID < 1 {
				return usageErrorf("TASK_ID must be a positive whole number, not %q", args[0])
			}
			view, stderr := nodeView(cmd, flags)
			if view != nil {
				defer view.Close()
			}
			n, err := startNode(cmd.Context(), flags, definition.NewCatalog(nil), stderr)
			if err != nil {
				return err
			}
			defer n.close()
			task, err := n.store.GetTask(cmd.Context(), taskID)
			if errors.Is(err, backends.ErrNotFound) {
				return usageErrorf("task %d does not exist in %s", taskID, redactDSN(flags.db))
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if !flags.json {
				fmt.Fprintf(cmd.OutOrStdout(), "task %d (%s/%s@%s) is %s: resuming\n", task.ID, task.Namespace, task.WorkflowName, task.WorkflowVersion, task.State)
			}
			return n.follow(cmd.Context(), task.ID, cmd.OutOrStdout(), stderr, flags.json, view)
		},
	}
	flags.register(cmd)
	return cmd
}
