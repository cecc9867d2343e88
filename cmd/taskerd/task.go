package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/engine"
)

// The task subcommands are a client of a running taskerd serve.

// defaultServer is --server with no TASKERD_SERVER.
const defaultServer = "http://127.0.0.1:8080"

type apiClient struct {
	server string
	token  string
	http   *http.Client
	asJSON bool
	out    io.Writer
}

func newTaskCmd() *cobra.Command {
	c := &apiClient{http: &http.Client{Timeout: 30 * time.Second}}
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Create, list, show and operate on tasks through a running taskerd serve",
		Long: `Client commands for the REST API of a running "taskerd serve".

--server defaults to $TASKERD_SERVER or ` + defaultServer + `; --token (or
$TASKERD_TOKEN) is sent as "Authorization: Bearer TOKEN": an API key (the
bootstrap admin key of ` + bootstrapKeyFileName + `, or one of "taskerd keys
create") or whatever token the server's authenticator plugins accept. A
flag wins over its variable. Output is a table for people; --json prints
the API's JSON for scripts.`,
	}
	c.addFlags(cmd)
	cmd.AddCommand(c.createCmd(), c.listCmd(), c.showCmd(), c.watchCmd())
	for _, verb := range []string{"cancel", "retry", "resolve"} {
		cmd.AddCommand(c.actionCmd(verb))
	}
	return cmd
}

// addFlags gives an API-client command --server, --token and --json, and
// sets c.out when it runs.
func (c *apiClient) addFlags(cmd *cobra.Command) {
	cmd.PersistentPreRun = func(cmd *cobra.Command, _ []string) { c.out = cmd.OutOrStdout() }
	server := os.Getenv("TASKERD_SERVER")
	if server == "" {
		server = defaultServer
	}
	cmd.PersistentFlags().StringVar(&c.server, "server", server, "taskerd API address")
	cmd.PersistentFlags().StringVar(&c.token, "token", "", "bearer token (default $TASKERD_TOKEN)")
	cmd.PersistentFlags().BoolVar(&c.asJSON, "json", false, "print the API's JSON")
}

func (c *apiClient) createCmd() *cobra.Command {
	var (
		version, contextArg, reason, key string
		tags, bypass                     []string
	)
	cmd := &cobra.Command{
		Use:     "create NAMESPACE/NAME [--version V] [--context JSON|@FILE] [--tag T]... [--bypass STEP]...",
		Short:   "Create a task",
		Example: `  taskerd task create ecommerce/order_fulfillment --context @order.json --idempotency-key order-A-1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFlags(reason, tags, key); err != nil {
				return err
			}
			body := map[string]any{"workflow": args[0]}
			if version != "" {
				body["version"] = version
			}
			if contextArg != "" {
				raw, err := readContextArg(contextArg)
				if err != nil {
					return err
				}
				body["context"] = raw
			}
			if reason != "" {
				body["reason"] = reason
			}
			if len(tags) > 0 {
				body["tags"] = tags
			}
			if len(bypass) > 0 {
				body["bypass_steps"] = bypass
			}
			var header []string
			if key != "" {
				header = []string{"Idempotency-Key", key}
			}
			var task apiTask
			raw, err := c.call("POST", "/v1/tasks", body, &task, header...)
			if err != nil {
				return err
			}
			return c.print(raw, func(w io.Writer) { printTasks(w, []apiTask{task}) })
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "workflow version (default: the highest loaded)")
	cmd.Flags().StringVar(&contextArg, "context", "", "task context: a JSON object, or @FILE")
	cmd.Flags().StringVar(&reason, "reason", "", "why the task is created")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "makes the request safe to repeat")
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "a tag (repeatable)")
	cmd.Flags().StringArrayVar(&bypass, "bypass", nil, "a skippable step to bypass (repeatable)")
	return cmd
}

func (c *apiClient) listCmd() *cobra.Command {
	var status, namespace, workflow, tag, cursor string
	var limit int
	cmd := &cobra.Command{
		Use:   "list [--status S[,S]] [--namespace NS] [--workflow NS/NAME] [--tag T] [--limit N] [--cursor C]",
		Short: "List tasks, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"status": status, "namespace": namespace, "workflow": workflow, "tag": tag, "cursor": cursor} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if limit > 0 {
				q.Set("limit", fmt.Sprint(limit))
			}
			var page struct {
				Tasks      []apiTask `json:"tasks"`
				NextCursor *string   `json:"next_cursor"`
			}
			raw, err := c.call("GET", "/v1/tasks?"+q.Encode(), nil, &page)
			if err != nil {
				return err
			}
			return c.print(raw, func(w io.Writer) {
				printTasks(w, page.Tasks)
				if page.NextCursor != nil {
					fmt.Fprintf(w, "\nmore: --cursor %s\n", *page.NextCursor)
				}
			})
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "task states, comma-separated")
	cmd.Flags().StringVar(&namespace, "namespace", "", "namespace")
	cmd.Flags().StringVar(&workflow, "workflow", "", "workflow NAMESPACE/NAME")
	cmd.Flags().StringVar(&tag, "tag", "", "tag")
	cmd.Flags().IntVar(&limit, "limit", 0, "page size (server default 50, at most 500)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "the cursor a previous page printed")
	return cmd
}

func (c *apiClient) showCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show TASK_ID",
		Short: "Show a task, its steps and its execution context",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var task apiTask
			raw, err := c.call("GET", "/v1/tasks/"+url.PathEscape(args[0]), nil, &task)
			if err != nil {
				return err
			}
			return c.print(raw, func(w io.Writer) { printTask(w, task) })
		},
	}
}

func (c *apiClient) actionCmd(verb string) *cobra.Command {
	var step, reason, results string
	cmd := &cobra.Command{
		Use:   verb + " TASK_ID [--step NAME] [--reason TEXT]",
		Short: strings.ToUpper(verb[:1]) + verb[1:] + " a task, or one of its steps with --step",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFlags(reason, nil, ""); err != nil {
				return err
			}
			body := map[string]any{}
			if reason != "" {
				body["reason"] = reason
			}
			if results != "" {
				if verb != "resolve" || step == "" {
					return usageErrorf("--results goes only with resolve --step")
				}
				raw, err := readJSONArg("--results", results)
				if err != nil {
					return err
				}
				body["results"] = raw
			}
			path := "/v1/tasks/" + url.PathEscape(args[0])
			if step == "" {
				var task apiTask
				raw, err := c.call("POST", path+"/"+verb, body, &task)
				if err != nil {
					return err
				}
				return c.print(raw, func(w io.Writer) { printTask(w, task) })
			}
			var s apiStep
			raw, err := c.call("POST", path+"/steps/"+url.PathEscape(step)+"/"+verb, body, &s)
			if err != nil {
				return err
			}
			return c.print(raw, func(w io.Writer) { printSteps(w, []apiStep{s}) })
		},
	}
	cmd.Flags().StringVar(&step, "step", "", "act on this step instead of the whole task")
	cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the audit trail)")
	if verb == "resolve" {
		cmd.Flags().StringVar(&results, "results", "", "with --step: the step's results, a JSON object or @FILE")
	}
	return cmd
}

// checkFlags refuses, before anything is sent, a --reason, --tag or
// --idempotency-key the server would refuse: the engine's limits, and text
// not every backend can store (which JSON encoding would otherwise
// silently turn into U+FFFD).
func checkFlags(reason string, tags []string, key string) error {
	var re *engine.RequestError
	if err := engine.CheckReason(reason); errors.As(err, &re) {
		return usageErrorf("--reason %s", re.Message)
	}
	if len(tags) > engine.MaxTags {
		return usageErrorf("--tag is given %d times; at most %d tags are allowed", len(tags), engine.MaxTags)
	}
	for _, tag := range tags {
		if err := engine.CheckTags([]string{tag}); errors.As(err, &re) {
			return usageErrorf("--tag %q %s", tag, re.Message)
		}
	}
	if err := engine.CheckIdempotencyKey(key); errors.As(err, &re) {
		return usageErrorf("--idempotency-key %s", re.Message)
	}
	return nil
}

// apiError is the API's error body.
type apiError struct {
	Error struct {
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Details json.RawMessage `json:"details"`
	} `json:"error"`
}

// callError is the error of a request that got no answer (status 0) or an
// answer that is not a success; an exitError carries it.
type callError struct {
	status int
	msg    string
}

func (e *callError) Error() string { return e.msg }

// call sends a request and decodes a 2xx answer into into. An API error
// becomes a one-line error: exit 2 when the request itself was wrong
// (400, 404, 413, 422), exit 1 otherwise.
func (c *apiClient) call(method, path string, body any, into any, header ...string) ([]byte, error) {
	return c.callCtx(context.Background(), method, path, body, into, header...)
}

// callCtx is call, given up when ctx ends.
func (c *apiClient) callCtx(ctx context.Context, method, path string, body any, into any, header ...string) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	base := strings.TrimRight(c.server, "/")
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, usageErrorf("--server %q: %s", c.server, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	token := c.token
	if token == "" {
		token = os.Getenv("TASKERD_TOKEN")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &exitError{code: 1, err: &callError{msg: fmt.Sprintf("cannot reach taskerd at %s: %s", base, err)}}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, &exitError{code: 1, err: fmt.Errorf("reading the answer of %s: %s", base, err)}
	}
	if res.StatusCode >= 300 {
		var ae apiError
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &ae) == nil && ae.Error.Message != "" {
			msg = ae.Error.Code + ": " + ae.Error.Message
			if len(ae.Error.Details) > 0 && string(ae.Error.Details) != "null" {
				msg += " " + string(ae.Error.Details)
			}
		}
		code := 1
		switch res.StatusCode {
		case 400, 404, 413, 422:
			code = 2
		case 401:
			msg += " — " + tokenHint(token != "")
		}
		return nil, &exitError{code: code, err: &callError{status: res.StatusCode, msg: fmt.Sprintf("%s %s: %d %s", method, path, res.StatusCode, msg)}}
	}
	if into != nil {
		if err := json.Unmarshal(raw, into); err != nil {
			return nil, &exitError{code: 1, err: fmt.Errorf("%s %s: unexpected answer: %s", method, path, err)}
		}
	}
	return raw, nil
}

// tokenHint says, after a 401, how to pass an API key.
func tokenHint(sent bool) string {
	if sent {
		return "the server refused the API key (unknown, revoked or expired): pass a valid one with --token KEY or TASKERD_TOKEN=KEY (taskerd keys list shows the keys)"
	}
	return "no API key was sent: pass one with --token KEY or TASKERD_TOKEN=KEY (the bootstrap admin key is in " + bootstrapKeyFileName + " beside the server's database; taskerd keys create makes others)"
}

func (c *apiClient) print(raw []byte, table func(w io.Writer)) error {
	if c.asJSON {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := c.out.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

type apiTask struct {
	ID               int64     `json:"id"`
	Workflow         string    `json:"workflow"`
	Version          string    `json:"version"`
	Status           string    `json:"status"`
	Tags             []string  `json:"tags"`
	Reason           string    `json:"reason"`
	CreatedAt        time.Time `json:"created_at"`
	Steps            []apiStep `json:"steps"`
	ExecutionContext *struct {
		ExecutionStatus      string  `json:"execution_status"`
		HealthStatus         string  `json:"health_status"`
		CompletionPercentage float64 `json:"completion_percentage"`
	} `json:"execution_context"`
}

type apiStep struct {
	Name            string          `json:"name"`
	Handler         string          `json:"handler"`
	Status          string          `json:"status"`
	Attempts        int             `json:"attempts"`
	RetryLimit      int             `json:"retry_limit"`
	Error           json.RawMessage `json:"error"`
	StartedAt       *time.Time      `json:"started_at"`
	LastAttemptedAt *time.Time      `json:"last_attempted_at"`
	Readiness       *struct {
		PermanentlyBlocked bool       `json:"permanently_blocked"`
		NextRetryAt        *time.Time `json:"next_retry_at"`
	} `json:"readiness"`
}

func printTasks(w io.Writer, tasks []apiTask) {
	fmt.Fprintln(w, "ID\tWORKFLOW\tVERSION\tSTATUS\tCREATED\tTAGS")
	for _, t := range tasks {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Workflow, t.Version, t.Status,
			t.CreatedAt.Format(time.RFC3339), strings.Join(t.Tags, ","))
	}
}

func printTask(w io.Writer, t apiTask) {
	fmt.Fprintf(w, "task %d\t%s@%s\n", t.ID, t.Workflow, t.Version)
	fmt.Fprintf(w, "status\t%s\n", t.Status)
	if ec := t.ExecutionContext; ec != nil {
		fmt.Fprintf(w, "execution\t%s, health %s, %.0f%% complete\n", ec.ExecutionStatus, ec.HealthStatus, ec.CompletionPercentage)
	}
	if t.Reason != "" {
		fmt.Fprintf(w, "reason\t%s\n", t.Reason)
	}
	fmt.Fprintln(w)
	printSteps(w, t.Steps)
}

func printSteps(w io.Writer, steps []apiStep) {
	fmt.Fprintln(w, "STEP\tHANDLER\tSTATUS\tATTEMPTS\tERROR")
	for _, s := range steps {
		errText := ""
		if len(s.Error) > 0 && string(s.Error) != "null" {
			var e struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(s.Error, &e) == nil {
				errText = e.Message
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%s\n", s.Name, s.Handler, s.Status, s.Attempts, s.RetryLimit, errText)
	}
}
