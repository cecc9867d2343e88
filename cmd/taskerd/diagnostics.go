package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/definition"
)

// maxWorkflowSizeEnv sets --max-workflow-size when the flag is not given.
const maxWorkflowSizeEnv = "TASKERD_MAX_WORKFLOW_SIZE"

// loadFlags are the settings of every command that loads workflows.
type loadFlags struct {
	maxSize int64
}

func (f *loadFlags) register(cmd *cobra.Command) {
	cmd.Flags().Int64Var(&f.maxSize, "max-workflow-size", definition.DefaultMaxFileSize,
		"largest workflow file read, in bytes; a larger one is refused unread; env "+maxWorkflowSizeEnv)
}

// check settles --max-workflow-size: the flag, else the environment, else
// the daemon config's max_workflow_size (cfg may be nil), else the default.
func (f *loadFlags) check(cmd *cobra.Command, cfg *config.Config) error {
	if !cmd.Flags().Changed("max-workflow-size") {
		if v, ok := os.LookupEnv(maxWorkflowSizeEnv); ok && v != "" {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return usageErrorf("%s=%q: want a number of bytes", maxWorkflowSizeEnv, v)
			}
			f.maxSize = n
		} else if cfg != nil && cfg.MaxWorkflowSize > 0 {
			f.maxSize = cfg.MaxWorkflowSize
		}
	}
	if f.maxSize < config.MinWorkflowSize {
		return usageErrorf("--max-workflow-size must be at least %d bytes, not %d", config.MinWorkflowSize, f.maxSize)
	}
	return nil
}

// loadWorkflows reads workflow paths, refusing files larger than maxSize
// bytes. Diagnostics about their contents are printed with source snippets
// (the first definition.MaxPrintedDiagnostics of them) and yield exit 1; a
// path that cannot be read is a usage problem and yields exit 2.
func loadWorkflows(stderr io.Writer, paths []string, maxSize int64) (*definition.Catalog, error) {
	parser := definition.NewParser()
	parser.MaxFileSize = maxSize
	workflows, diags := parser.Load(paths...)
	if definition.IsPathError(diags) {
		var msgs []string
		for _, d := range diags {
			msgs = append(msgs, strings.ToLower(d.Summary[:1])+d.Summary[1:]+": "+d.Detail)
		}
		return nil, &exitError{code: 2, err: fmt.Errorf("%s", strings.Join(msgs, "\ntaskerd: "))}
	}
	for _, d := range diags {
		if _, ok := d.Extra.(definition.FileTooLarge); ok {
			d.Detail += " Raise the limit with --max-workflow-size, " + maxWorkflowSizeEnv + " or max_workflow_size in the daemon config."
		}
	}
	if len(diags) > 0 {
		width, color := terminal(stderr)
		if err := parser.WriteDiagnostics(stderr, diags, width, color); err != nil {
			return nil, err
		}
	}
	if diags.HasErrors() {
		return nil, &exitError{code: 1, err: fmt.Errorf("invalid workflows: %s", countErrors(diags))}
	}
	return definition.NewCatalog(workflows).WithSchedules(parser.Schedules()), nil
}

func countErrors(diags hcl.Diagnostics) string {
	n := 0
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			n++
		}
	}
	if n == 1 {
		return "1 error"
	}
	return fmt.Sprintf("%d errors", n)
}

// terminal reports whether w is a terminal that wants colour, and a width to
// wrap diagnostics at (0: no wrapping, for pipes and files).
func terminal(w io.Writer) (width uint, color bool) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, false
	}
	info, err := f.Stat()
	if err != nil || info.Mode()&os.ModeCharDevice == 0 {
		return 0, false
	}
	_, noColor := os.LookupEnv("NO_COLOR")
	return 100, !noColor
}

// needPaths is a cobra.PositionalArgs that asks for at least one PATH.
func needPaths(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usageErrorf("%s needs at least one workflow file or directory; see 'taskerd %s --help'", cmd.Name(), cmd.Name())
	}
	return nil
}
