package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/definition"
)

// loadWorkflows reads workflow paths. Diagnostics about their contents are
// printed with source snippets and yield exit 1; a path that cannot be read
// is a usage problem and yields exit 2.
func loadWorkflows(stderr io.Writer, paths []string) (*definition.Catalog, error) {
	workflows, parser, diags := definition.Load(paths...)
	if definition.IsPathError(diags) {
		var msgs []string
		for _, d := range diags {
			msgs = append(msgs, strings.ToLower(d.Summary[:1])+d.Summary[1:]+": "+d.Detail)
		}
		return nil, &exitError{code: 2, err: fmt.Errorf("%s", strings.Join(msgs, "\ntaskerd: "))}
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
	return definition.NewCatalog(workflows), nil
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
