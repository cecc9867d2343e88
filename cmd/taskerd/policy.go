package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check, test and try authorization policies (OPA Rego)",
		Long: `Authorization policies are Rego v1 files that define data.taskerd.authz.allow
(and optionally data.taskerd.authz.reasons). See docs/policies.md for the
input document and the shipped default policy.`,
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyTestCmd(), newPolicyEvalCmd())
	return cmd
}

// policyError turns a policy loading error into an exit: compile errors are
// printed one per line with file:line:col and are a "no" (1); anything else
// (an unreadable or empty directory) means the command could not run (2).
func policyError(stderr io.Writer, err error) error {
	var ce *policy.CompileError
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Fprintln(stderr, p)
		}
		return &exitError{code: 1, err: fmt.Errorf("policy does not compile: %d %s", len(ce.Problems), pluralWord(len(ce.Problems), "error"))}
	}
	return &exitError{code: 2, err: err}
}

func pluralWord(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func needDir(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageErrorf("%s needs one policy directory; see 'taskerd policy %s --help'", cmd.Name(), cmd.Name())
	}
	return nil
}

func newPolicyCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check DIR",
		Short: "Compile a policy directory in strict mode",
		Long: `Parse and compile every *.rego file under DIR (Rego v1, strict mode: unused
variables and imports, shadowed input and deprecated built-ins are errors),
unit tests included, as 'taskerd serve' does before it uses a policy.

Prints the files and the policy revision (the hash the decision log records)
and exits 0. Prints every problem as FILE:LINE:COL: message and exits 1 when
the policy does not compile or defines no data.taskerd.authz.allow. Exits 2
when DIR cannot be read or holds no *.rego file.`,
		Example: "  taskerd policy check ./policy",
		Args:    needDir,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := policy.Check(args[0])
			if errors.Is(err, policy.ErrNoAllowRule) {
				return &exitError{code: 1, err: fmt.Errorf("%s: %w", args[0], err)}
			}
			if err != nil {
				return policyError(cmd.ErrOrStderr(), err)
			}
			out := cmd.OutOrStdout()
			for _, f := range res.Files {
				fmt.Fprintln(out, f)
			}
			fmt.Fprintf(out, "ok: %d %s, revision %s\n", len(res.Files), pluralWord(len(res.Files), "file"), res.Revision)
			return nil
		},
	}
}

func newPolicyTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test DIR",
		Short: "Run a policy directory's Rego unit tests",
		Long: `Compile every *.rego file under DIR in strict mode and run its unit tests
(rules named test_*, usually in *_test.rego files) with OPA's tester. Built-in
errors raised during a test fail it.

Prints one line per test: PASS, FAIL or SKIP (todo_test_*), its name and
FILE:LINE, then a summary. Exits 0 when every test passed, 1 when one failed,
the policy does not compile or there are no tests at all, 2 when DIR cannot be
read or holds no *.rego file.`,
		Example: "  taskerd policy test ./policy\n  taskerd policy test policy/default",
		Args:    needDir,
		RunE: func(cmd *cobra.Command, args []string) error {
			results, err := policy.Test(cmd.Context(), args[0])
			if err != nil {
				return policyError(cmd.ErrOrStderr(), err)
			}
			if len(results) == 0 {
				return &exitError{code: 1, err: fmt.Errorf("%s holds no Rego unit tests (rules named test_*)", args[0])}
			}
			out := cmd.OutOrStdout()
			passed, failed := 0, 0
			for _, r := range results {
				switch {
				case r.Skip:
					fmt.Fprintf(out, "SKIP  %s  %s\n", r.Name, r.Location)
				case r.Pass:
					passed++
					fmt.Fprintf(out, "PASS  %s  %s\n", r.Name, r.Location)
				default:
					failed++
					fmt.Fprintf(out, "FAIL  %s  %s\n", r.Name, r.Location)
					if r.Message != "" {
						fmt.Fprintf(out, "      %s\n", r.Message)
					}
				}
			}
			fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", passed, failed, len(results)-passed-failed)
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d %s failed", failed, passed+failed, pluralWord(passed+failed, "test"))}
			}
			return nil
		},
	}
}

func newPolicyEvalCmd() *cobra.Command {
	var dir, inputPath string
	cmd := &cobra.Command{
		Use:   "eval [--dir DIR] --input input.json",
		Short: "Decide one input document and print the decision and its reasons",
		Long: `Evaluate the policy of DIR (the shipped default policy when --dir is not given)
against an input document, given as is (the daemon builds one of this shape
for every request):

  {"subject":  {"id": "oscar", "roles": ["operator"], "claims": {"namespaces": ["ecommerce"]}},
   "action":   "task:cancel",
   "resource": {"type": "task", "namespace": "ecommerce", "workflow": "", "version": "", "task_id": 42, "step": ""},
   "request":  {"method": "POST", "path": "/v1/tasks/42/cancel", "remote_addr": "10.0.0.7:51234"}}

--input - reads the document from standard input.

Prints "allow" or "deny", then one "reason: ..." line per reason and the
policy revision. Exits 0 on allow and 1 on deny, including the denies that
fail closed (an undefined or non-boolean allow, an evaluation error, whose
cause goes to stderr); 2 when the input or DIR cannot be read.`,
		Example: "  taskerd policy eval --input req.json\n  taskerd policy eval --dir ./policy --input req.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if inputPath == "" {
				return usageErrorf("policy eval needs --input FILE; see 'taskerd policy eval --help'")
			}
			var doc []byte
			var err error
			if inputPath == "-" {
				doc, err = io.ReadAll(cmd.InOrStdin())
			} else {
				doc, err = os.ReadFile(inputPath)
			}
			if err != nil {
				return usageErrorf("cannot read the input document: %s", err)
			}
			quiet := policy.WithLogger(slog.New(slog.DiscardHandler))
			var eng *policy.Engine
			if dir == "" {
				eng, err = policy.Default(quiet)
			} else {
				eng, err = policy.Load(dir, quiet)
			}
			if err != nil {
				return policyError(cmd.ErrOrStderr(), err)
			}
			defer eng.Close()
			d, err := eng.EvalDocument(cmd.Context(), doc)
			if errors.Is(err, policy.ErrBadInput) {
				return usageErrorf("%s", err)
			}
			printDecision(cmd.OutOrStdout(), d, err == nil && d.Allow, eng.Revision())
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("denied because the policy failed: %w", err)}
			}
			if !d.Allow {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "policy directory (default: the shipped default policy)")
	cmd.Flags().StringVar(&inputPath, "input", "", "input document, JSON (- for standard input)")
	return cmd
}

func printDecision(out io.Writer, d api.Decision, allow bool, revision string) {
	if allow {
		fmt.Fprintln(out, "allow")
	} else {
		fmt.Fprintln(out, "deny")
	}
	for _, r := range d.Reasons {
		fmt.Fprintf(out, "reason: %s\n", r)
	}
	fmt.Fprintf(out, "revision: %s\n", revision)
}
