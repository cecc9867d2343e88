package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newValidateCmd() *cobra.Command {
	var load loadFlags
	cmd := &cobra.Command{
		Use:   "validate PATH...",
		Short: "Check workflow files and print one line per valid workflow",
		Long: `Parse and validate workflow definitions. Each PATH is an HCL file or a
directory whose *.hcl files are read.

Prints one line per workflow (identity, steps, dependency levels), then one
per schedule (name, workflow, cron rule and zone), and exits 0 when every
workflow and schedule is valid. Otherwise prints the problems with their
file:line:col and source snippet (the first 50, then how many more) and
exits 1. Exits 2 when a PATH cannot be read or the arguments are wrong.

A file larger than --max-workflow-size is refused without being read, and
one that nests brackets or operators more than 100 levels deep is refused
before it is parsed.`,
		Example: "  taskerd validate workflows/\n  taskerd validate workflows/linear.hcl workflows/diamond.hcl",
		Args:    needPaths,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := load.check(cmd, nil); err != nil {
				return err
			}
			catalog, err := loadWorkflows(cmd.ErrOrStderr(), args, load.maxSize)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			for _, w := range catalog.All() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", w.ID(), plural(len(w.Steps), "step"), plural(len(w.Levels()), "level"))
			}
			for _, s := range catalog.Schedules() {
				fmt.Fprintf(tw, "schedule %s\t%s\t%s (%s)\n", s.Name, s.Workflow, s.Cron, s.Timezone)
			}
			return tw.Flush()
		},
	}
	load.register(cmd)
	return cmd
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
