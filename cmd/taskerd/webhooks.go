package main

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/config"
)

// The webhooks subcommands read and move the webhooks' cursors in the
// database directly, like the keys subcommands: no server needs to run,
// and a running one follows a replay within seconds.

func newWebhooksCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhooks",
		Short: "Show the webhooks' delivery positions and dead letters; replay events",
		Long: `Inspect and steer the webhooks of the config (webhook "NAME" { ... } in
taskerd.hcl). Each webhook has a cursor in the database: the last event of
the log it has handled. "list" shows where each one is, "dead" the events it
gave up on, and "replay" moves its cursor back (or forward) so that delivery
restarts at an event: a running serve picks the move up within seconds.

--db and --config are those of serve (default ./taskerd.hcl when it exists,
or TASKERD_CONFIG; the database of the config unless --db or
TASKERD_DATABASE).`,
	}
	cmd.AddCommand(newWebhooksListCmd(), newWebhooksReplayCmd(), newWebhooksDeadCmd())
	return cmd
}

// webhookView is one row of webhooks list.
type webhookView struct {
	Name       string     `json:"name"`
	URL        string     `json:"url,omitempty"`
	Events     []string   `json:"events"`
	Namespaces []string   `json:"namespaces"`
	Configured bool       `json:"configured"`
	CursorSeq  *int64     `json:"cursor_seq"`
	LogEnd     int64      `json:"log_end"`
	Lag        int64      `json:"lag"`
	LeaseOwner string     `json:"lease_owner,omitempty"`
	LeaseUntil *time.Time `json:"lease_until,omitempty"`
	Dead       int        `json:"dead_letters"`
}

// redactURL hides a password in a URL.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}

func newWebhooksListCmd() *cobra.Command {
	var f keysFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the webhooks: their cursors, lag, lease holder and dead letters",
		Long: `List the webhooks of the config and, marked "not configured", those that
have a cursor in the database but no block any more: the last event each
has handled (CURSOR; "-" before the first start), the log's end, the lag
between them, the node delivering it (whose lease has not expired) and how
many events it gave up on (taskerd webhooks dead NAME shows them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			ctx := cmd.Context()
			end, err := store.LastEventSeq(ctx)
			if err != nil {
				return &exitError{code: 1, err: oneLine(err)}
			}
			cursors, err := store.ListCursors(ctx)
			if err != nil {
				return &exitError{code: 1, err: oneLine(err)}
			}
			byName := map[string]*backends.EventCursor{}
			for _, c := range cursors {
				byName[c.Name] = c
			}
			var views []webhookView
			var configured []*config.Webhook
			if f.cfg != nil {
				configured = f.cfg.Webhooks
			}
			seen := map[string]bool{}
			for _, w := range configured {
				seen[webhookCursor(w.Name)] = true
				views = append(views, webhookView{Name: w.Name, URL: redactURL(w.URL), Events: orAll(w.Events), Namespaces: orAll(w.Namespaces), Configured: true})
			}
			for _, c := range cursors {
				if name, ok := strings.CutPrefix(c.Name, "webhook:"); ok && !seen[c.Name] {
					views = append(views, webhookView{Name: name, Events: []string{}, Namespaces: []string{}})
				}
			}
			now := time.Now()
			for i := range views {
				v := &views[i]
				v.LogEnd = end
				name := webhookCursor(v.Name)
				if c := byName[name]; c != nil {
					seq := c.Seq
					v.CursorSeq, v.Lag = &seq, max(end-seq, 0)
					if c.Owner != "" && c.LeaseUntil != nil && c.LeaseUntil.After(now) {
						v.LeaseOwner, v.LeaseUntil = c.Owner, c.LeaseUntil
					}
				}
				dead, err := store.ListDeadLetters(ctx, name, 0)
				if err != nil {
					return &exitError{code: 1, err: oneLine(err)}
				}
				v.Dead = len(dead)
			}
			if f.asJSON {
				if views == nil {
					views = []webhookView{}
				}
				return printJSON(cmd.OutOrStdout(), views)
			}
			if len(views) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no webhooks (add a webhook \"NAME\" { ... } block to taskerd.hcl)")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tURL\tEVENTS\tNAMESPACES\tCURSOR\tLOG END\tLAG\tDELIVERING NODE\tDEAD LETTERS")
			for _, v := range views {
				cursor, lag := "-", "-"
				if v.CursorSeq != nil {
					cursor, lag = fmt.Sprint(*v.CursorSeq), fmt.Sprint(v.Lag)
				}
				u := v.URL
				if !v.Configured {
					u = "(not configured)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\n", v.Name, u, strings.Join(v.Events, ","), strings.Join(v.Namespaces, ","),
					cursor, v.LogEnd, lag, orDash(v.LeaseOwner), v.Dead)
			}
			return tw.Flush()
		},
	}
	f.register(cmd)
	return cmd
}

func orAll(s []string) []string {
	if len(s) == 0 {
		return []string{"*"}
	}
	return s
}

// configuredWebhookNamed finds webhook name in the config, or says which
// there are.
func configuredWebhookNamed(f *keysFlags, name string) (*config.Webhook, error) {
	var names []string
	if f.cfg != nil {
		for _, w := range f.cfg.Webhooks {
			if w.Name == name {
				return w, nil
			}
			names = append(names, w.Name)
		}
	}
	switch {
	case f.cfg == nil:
		return nil, usageErrorf("no webhook %q: no config read (--config taskerd.hcl names the webhooks)", name)
	case len(names) == 0:
		return nil, usageErrorf("no webhook %q: %s configures none", name, f.cfg.Filename)
	}
	return nil, usageErrorf("no webhook %q in %s (it has %s)", name, f.cfg.Filename, strings.Join(names, ", "))
}

func newWebhooksReplayCmd() *cobra.Command {
	var (
		f    keysFlags
		from int64
	)
	cmd := &cobra.Command{
		Use:   "replay NAME --from SEQ",
		Short: "Deliver a webhook's events again from event SEQ on",
		Long: `Move webhook NAME's cursor so that its delivery restarts at event SEQ (as
"seq" in the events and Taskerd-Event-Seq in the requests): the events from
SEQ on that match the webhook are delivered again, in order. That is how to
retry dead letters once the receiver is fixed. The node delivering the
webhook notices the move within seconds (its lease is ended); receivers see
events they may have had already, and should de-duplicate on seq.

SEQ may also be past what was delivered (skipping events), up to the log's
end plus one. Only the webhooks of the config can be replayed.`,
		Example: `  taskerd webhooks replay orders --from 1234`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("from") {
				return usageErrorf("--from SEQ is required: the first event to deliver again")
			}
			if from < 1 {
				return usageErrorf("--from %d: an event's seq is at least 1", from)
			}
			if err := f.check(cmd); err != nil {
				return err
			}
			w, err := configuredWebhookNamed(&f, args[0])
			if err != nil {
				return err
			}
			store, err := openStore(cmd.Context(), f.storeFlags)
			if err != nil {
				return err
			}
			defer store.Close()
			end, err := store.LastEventSeq(cmd.Context())
			if err != nil {
				return &exitError{code: 1, err: oneLine(err)}
			}
			if from > end+1 {
				return usageErrorf("--from %d: the log ends at event %d", from, end)
			}
			if err := store.ResetCursor(cmd.Context(), webhookCursor(w.Name), from-1, time.Now()); err != nil {
				return &exitError{code: 1, err: oneLine(err)}
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"name": w.Name, "from": from, "log_end": end})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "webhook %s: delivery restarts at event %d (the log ends at %d)\n", w.Name, from, end)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().Int64Var(&from, "from", 0, "the first event (seq) to deliver again")
	return cmd
}

func newWebhooksDeadCmd() *cobra.Command {
	var (
		f     keysFlags
		limit int
	)
	cmd := &cobra.Command{
		Use:   "dead NAME",
		Short: "List the events a webhook gave up on (its dead letters)",
		Long: `List webhook NAME's dead letters, by seq: the events it gave up on after
max_attempts failed deliveries, with the attempts made and the last error.
"taskerd webhooks replay NAME --from SEQ" delivers them (and what follows)
again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			dead, err := store.ListDeadLetters(cmd.Context(), webhookCursor(args[0]), limit)
			if err != nil {
				return &exitError{code: 1, err: oneLine(err)}
			}
			if len(dead) == 0 && !f.asJSON {
				if _, err := configuredWebhookNamed(&f, args[0]); err != nil {
					return err
				}
			}
			if f.asJSON {
				type row struct {
					Seq       int64     `json:"seq"`
					Attempts  int       `json:"attempts"`
					LastError string    `json:"last_error"`
					At        time.Time `json:"at"`
				}
				rows := make([]row, len(dead))
				for i, d := range dead {
					rows[i] = row{d.Seq, d.Attempts, d.LastError, d.CreatedAt}
				}
				return printJSON(cmd.OutOrStdout(), rows)
			}
			if len(dead) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "webhook %s has no dead letters\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tATTEMPTS\tAT\tLAST ERROR")
			for _, d := range dead {
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s\n", d.Seq, d.Attempts, d.CreatedAt.UTC().Format(time.RFC3339), d.LastError)
			}
			return tw.Flush()
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many (default all)")
	return cmd
}
