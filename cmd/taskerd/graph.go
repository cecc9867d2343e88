package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/definition"
)

func newGraphCmd() *cobra.Command {
	var ref, format string
	var load loadFlags
	cmd := &cobra.Command{
		Use:   "graph PATH... [--workflow NAMESPACE/NAME[@VERSION]] [--format mermaid|json]",
		Short: "Render a workflow's DAG as Mermaid or JSON",
		Long: `Render one workflow's dependency graph.

--format mermaid (the default) prints a Mermaid "graph TD" flowchart.
--format json prints {"workflow", "nodes": [{"name","handler","level"}],
"edges": [{"from","to"}], "levels": [[names...]...]}, nodes in topological order.

--workflow may be left out when the paths hold a single workflow. Without a
version the highest loaded version is shown.`,
		Example: "  taskerd graph workflows/diamond.hcl --workflow default/diamond --format json\n  taskerd graph workflows/ --workflow ecommerce/order_fulfillment@1.0.0",
		Args:    needPaths,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "mermaid" && format != "json" {
				return usageErrorf("--format must be mermaid or json, not %q", format)
			}
			if err := load.check(cmd, nil); err != nil {
				return err
			}
			catalog, err := loadWorkflows(cmd.ErrOrStderr(), args, load.maxSize)
			if err != nil {
				return err
			}
			w, err := pickWorkflow(catalog, ref)
			if err != nil {
				return err
			}
			return writeGraph(cmd.OutOrStdout(), w, format)
		},
	}
	cmd.Flags().StringVarP(&ref, "workflow", "w", "", "workflow to render, NAMESPACE/NAME[@VERSION]")
	cmd.Flags().StringVarP(&format, "format", "f", "mermaid", "output format: mermaid or json")
	load.register(cmd)
	return cmd
}

func pickWorkflow(catalog *definition.Catalog, ref string) (*definition.Workflow, error) {
	if ref == "" {
		all := catalog.All()
		if len(all) == 1 {
			return all[0], nil
		}
		return nil, usageErrorf("the paths hold %d workflows: choose one with --workflow NAMESPACE/NAME[@VERSION]", len(all))
	}
	r, err := definition.ParseRef(ref)
	if err != nil {
		return nil, usageErrorf("%s", err)
	}
	w, err := catalog.Lookup(r)
	if err != nil {
		return nil, usageErrorf("%s", err)
	}
	return w, nil
}

func writeGraph(out io.Writer, w *definition.Workflow, format string) error {
	if format == "mermaid" {
		_, err := fmt.Fprint(out, w.Mermaid())
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(w.Graph())
}
