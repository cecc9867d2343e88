package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/config"
)

// The keys subcommands manage the API keys of the database directly: no
// server needs to run, and on PostgreSQL every node sees the change on its
// next request.

// defaultRoles are the roles of the shipped default policy.
var defaultRoles = []string{"admin", "operator", "viewer", "metrics"}

var (
	roleRE      = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)
	namespaceRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,127}$`)
)

// maxSubject bounds --subject, in bytes.
const maxSubject = 255

type keysFlags struct {
	storeFlags
	config string
	asJSON bool
	cfg    *config.Config
}

func (f *keysFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "config", os.Getenv("TASKERD_CONFIG"), "daemon config (taskerd.hcl) whose database (and policy) to use; flags override it; env TASKERD_CONFIG")
	f.registerDB(cmd.Flags())
	cmd.Flags().BoolVar(&f.noMigrate, "no-migrate", false, "PostgreSQL: refuse a database whose schema is not up to date instead of migrating it (see taskerd migrate)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print JSON for scripts")
}

// open reads --config (./taskerd.hcl when there is one and neither
// --config nor TASKERD_CONFIG names another, as serve does): its database
// unless --db or TASKERD_DATABASE says otherwise. Then it opens the store.
func (f *keysFlags) open(cmd *cobra.Command) (backends.Store, error) {
	if err := f.check(cmd); err != nil {
		return nil, err
	}
	return openStore(cmd.Context(), f.storeFlags)
}

// check reads the config, as open says, without opening the store.
func (f *keysFlags) check(cmd *cobra.Command) error {
	if !cmd.Flags().Changed("config") {
		f.config = configHere(f.config)
	}
	if f.config == "" {
		return nil
	}
	cfg, err := loadConfig(cmd, f.config, &f.storeFlags)
	if err != nil {
		return err
	}
	f.cfg = cfg
	return nil
}

// customPolicy: the config names a policy directory of its own, whose
// roles the CLI cannot know.
func (f *keysFlags) customPolicy() bool {
	return f.cfg != nil && f.cfg.Policy != nil && f.cfg.Policy.Dir != ""
}

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, list, revoke and audit the API keys of the database",
		Long: `Manage the API keys "taskerd serve" accepts. They are stored in the database
(only their SHA-256, never the key), so these commands work on the database
directly, with or without a server running, and every node of a PostgreSQL
cluster accepts a new key, or refuses a revoked one, from its next request.
Creations and revocations are kept in an audit table, with who did them
("cli:" and the operating system user); "taskerd keys audit" shows them.

--db and --config are those of serve (default sqlite:taskerd.db, or
TASKERD_DATABASE, or TASKERD_CONFIG's database).`,
	}
	cmd.AddCommand(newKeysCreateCmd(), newKeysListCmd(), newKeysRevokeCmd(), newKeysAuditCmd())
	return cmd
}

// keyView is a key as the CLI prints it: never the hash.
type keyView struct {
	ID         string     `json:"id"`
	Subject    string     `json:"subject"`
	Roles      []string   `json:"roles"`
	Namespaces []string   `json:"namespaces"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	RevokedBy  string     `json:"revoked_by,omitempty"`
	// Key is set only in create's answer.
	Key string `json:"key,omitempty"`
}

func viewOf(k *backends.APIKey) keyView {
	return keyView{ID: k.ID, Subject: k.Subject, Roles: k.Roles, Namespaces: k.Namespaces, CreatedAt: k.CreatedAt,
		CreatedBy: k.CreatedBy, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, RevokedBy: k.RevokedBy}
}

func newKeysCreateCmd() *cobra.Command {
	var (
		f                 keysFlags
		subject, expires  string
		roles, namespaces []string
	)
	cmd := &cobra.Command{
		Use:   "create --subject NAME --role ROLE [--namespace NS]... [--expires D]",
		Short: "Create an API key and print it, once",
		Long: `Create an API key for a subject with roles (and, for an operator, the
namespaces it may act in), store its SHA-256 and print the key. The key is
shown only now; keep it. Send it as "Authorization: Bearer KEY" or
"X-API-Key: KEY", or set TASKERD_TOKEN=KEY for the task commands.

Roles: the default policy knows admin, operator (task and step actions in
its --namespace list, which it needs), viewer (read tasks, steps and
workflows) and metrics (GET /metrics only). Other role names are accepted
only with a --config whose policy { dir } names a policy of your own.

--expires: a duration from now (720h, 90m, or days: 30d) or an RFC 3339
time (2031-01-01T00:00:00Z). Default: never.`,
		Example: `  taskerd keys create --subject ci-bot --role operator --namespace ecommerce --expires 90d
  taskerd keys create --subject prometheus --role metrics
  taskerd keys create --subject dashboard --role viewer --db postgres://taskerd@db/taskerd`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			now := time.Now().UTC().Truncate(time.Microsecond)
			p := &backends.NewAPIKeyParams{Subject: subject, Roles: roles, Namespaces: namespaces, Actor: cliActor(), Now: now}
			if err := checkKeyParams(p, f.customPolicy()); err != nil {
				return err
			}
			if expires != "" {
				at, err := parseExpires(expires, now)
				if err != nil {
					return err
				}
				p.ExpiresAt = &at
			}
			store, err := openStore(cmd.Context(), f.storeFlags)
			if err != nil {
				return err
			}
			defer store.Close()
			var (
				k   *backends.APIKey
				key string
			)
			// A new id that is taken (10 random hex digits: unlikely) is
			// drawn again.
			for attempt := 0; ; attempt++ {
				if p.ID, err = api.NewKeyID(); err != nil {
					return &exitError{code: 1, err: err}
				}
				if key, p.Hash, err = api.NewKey(); err != nil {
					return &exitError{code: 1, err: err}
				}
				k, err = store.CreateAPIKey(cmd.Context(), p)
				if err == nil || !errors.Is(err, backends.ErrDuplicate) || attempt == 2 {
					break
				}
			}
			if err != nil {
				return &exitError{code: 1, err: oneLine(err)}
			}
			v := viewOf(k)
			v.Key = key
			out := cmd.OutOrStdout()
			if f.asJSON {
				return printJSON(out, v)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			printKeyFields(tw, v)
			fmt.Fprintf(tw, "key\t%s\n", key)
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "taskerd: the key is shown only now; keep it (e.g. export TASKERD_TOKEN=KEY for the task commands)")
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&subject, "subject", "", "who the key authenticates (the policy's input.subject.id)")
	cmd.Flags().StringArrayVar(&roles, "role", nil, "a role: admin, operator, viewer or metrics (repeatable)")
	cmd.Flags().StringArrayVar(&namespaces, "namespace", nil, "a namespace an operator may act in (repeatable)")
	cmd.Flags().StringVar(&expires, "expires", "", "when the key stops working: a duration (720h, 30d) or an RFC 3339 time; default never")
	return cmd
}

// checkKeyParams refuses what create should not store.
func checkKeyParams(p *backends.NewAPIKeyParams, customPolicy bool) error {
	if p.Subject == "" {
		return usageErrorf("--subject is required")
	}
	if len(p.Subject) > maxSubject {
		return usageErrorf("--subject is %d bytes; at most %d are allowed", len(p.Subject), maxSubject)
	}
	if err := backends.CheckText(p.Subject); err != nil || strings.ContainsFunc(p.Subject, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return usageErrorf("--subject %q: must be printable UTF-8 text", p.Subject)
	}
	if len(p.Roles) == 0 {
		return usageErrorf("--role is required (%s)", strings.Join(defaultRoles, ", "))
	}
	seen := map[string]bool{}
	for _, r := range p.Roles {
		if !roleRE.MatchString(r) {
			return usageErrorf("--role %q: a role is lower case letters, digits, '_', '.' or '-'", r)
		}
		if !customPolicy && !slices.Contains(defaultRoles, r) {
			return usageErrorf("--role %q: the default policy knows %s (a policy of your own: pass the --config naming its policy { dir })",
				r, strings.Join(defaultRoles, ", "))
		}
		if seen[r] {
			return usageErrorf("--role %q is given twice", r)
		}
		seen[r] = true
	}
	seen = map[string]bool{}
	for _, ns := range p.Namespaces {
		if !namespaceRE.MatchString(ns) {
			return usageErrorf("--namespace %q: a namespace is letters, digits, '_' and '-', not starting with a digit or '-'", ns)
		}
		if seen[ns] {
			return usageErrorf("--namespace %q is given twice", ns)
		}
		seen[ns] = true
	}
	if !customPolicy && slices.Contains(p.Roles, "operator") && len(p.Namespaces) == 0 {
		return usageErrorf("--role operator needs at least one --namespace: the default policy lets an operator act only in its namespaces")
	}
	return nil
}

// parseExpires reads --expires: a positive duration from now (Go syntax,
// or a whole number of days "30d"), or an RFC 3339 time after now.
func parseExpires(s string, now time.Time) (time.Time, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil {
			if n <= 0 || n > 100*365 {
				return time.Time{}, usageErrorf("--expires %q: want between 1d and 36500d", s)
			}
			return now.Add(time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, usageErrorf("--expires %q: the duration must be positive", s)
		}
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		if !t.After(now) {
			return time.Time{}, usageErrorf("--expires %q is in the past", s)
		}
		return t.UTC().Truncate(time.Microsecond), nil
	}
	return time.Time{}, usageErrorf("--expires %q: want a duration (720h, 30d) or an RFC 3339 time (2031-01-01T00:00:00Z)", s)
}

// cliActor names who runs the command, for the audit: "cli:" and the
// operating system user.
func cliActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	if name := os.Getenv("USER"); name != "" {
		return "cli:" + name
	}
	return "cli:unknown"
}

func printKeyFields(w io.Writer, v keyView) {
	fmt.Fprintf(w, "id\t%s\n", v.ID)
	fmt.Fprintf(w, "subject\t%s\n", v.Subject)
	fmt.Fprintf(w, "roles\t%s\n", strings.Join(v.Roles, ","))
	fmt.Fprintf(w, "namespaces\t%s\n", orDash(strings.Join(v.Namespaces, ",")))
	fmt.Fprintf(w, "expires\t%s\n", timeOr(v.ExpiresAt, "never"))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeOr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newKeysListCmd() *cobra.Command {
	var f keysFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the API keys (never the keys themselves), oldest first",
		Long: `List every API key of the database, oldest first: its id, subject, roles,
namespaces, creation, expiry and revocation. Revoked and expired keys stay
listed. Neither the keys nor their hashes are ever printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			keys, err := store.ListAPIKeys(cmd.Context())
			if err != nil {
				return &exitError{code: 1, err: oneLine(err)}
			}
			views := make([]keyView, len(keys))
			for i, k := range keys {
				views[i] = viewOf(k)
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), views)
			}
			now := time.Now()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSUBJECT\tROLES\tNAMESPACES\tCREATED\tEXPIRES\tREVOKED")
			for _, v := range views {
				exp := timeOr(v.ExpiresAt, "never")
				if v.ExpiresAt != nil && !now.Before(*v.ExpiresAt) {
					exp += " (expired)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Subject, strings.Join(v.Roles, ","),
					orDash(strings.Join(v.Namespaces, ",")), v.CreatedAt.Format(time.RFC3339), exp, timeOr(v.RevokedAt, "-"))
			}
			return tw.Flush()
		},
	}
	f.register(cmd)
	return cmd
}

func newKeysRevokeCmd() *cobra.Command {
	var f keysFlags
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key: refused from the next request on, on every node",
		Long: `Revoke the API key ID (as create and list print it). Every node refuses it
from its next request (401): nothing is cached. Revoking a key already
revoked changes nothing and says so (exit 0); an unknown ID exits 2.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			k, revoked, err := store.RevokeAPIKey(cmd.Context(), args[0], cliActor(), time.Now().UTC().Truncate(time.Microsecond))
			if errors.Is(err, backends.ErrNotFound) {
				return usageErrorf("no API key %q (taskerd keys list shows them)", args[0])
			}
			if err != nil {
				return &exitError{code: 1, err: oneLine(err)}
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), viewOf(k))
			}
			if !revoked {
				fmt.Fprintf(cmd.OutOrStdout(), "API key %s (%s) was already revoked at %s by %s\n", k.ID, k.Subject, timeOr(k.RevokedAt, "-"), k.RevokedBy)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked API key %s (%s)\n", k.ID, k.Subject)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newKeysAuditCmd() *cobra.Command {
	var f keysFlags
	cmd := &cobra.Command{
		Use:   "audit [ID]",
		Short: "Show the API keys' audit trail: who created and revoked which key, when",
		Long: `Show the audit rows of the API key ID, or of every key, in the order they
were written: the time, the key, the action (created or revoked), who did it
and, for a creation, what the key was created as. Never a key or a hash.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			store, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			events, err := store.ListAPIKeyEvents(cmd.Context(), id)
			if err != nil {
				return &exitError{code: 1, err: oneLine(err)}
			}
			if id != "" && len(events) == 0 {
				return usageErrorf("no API key %q (taskerd keys list shows them)", id)
			}
			if f.asJSON {
				type row struct {
					KeyID  string    `json:"key_id"`
					Action string    `json:"action"`
					Actor  string    `json:"actor"`
					At     time.Time `json:"at"`
					Detail string    `json:"detail,omitempty"`
				}
				rows := make([]row, len(events))
				for i, e := range events {
					rows[i] = row{KeyID: e.KeyID, Action: e.Action, Actor: e.Actor, At: e.At, Detail: e.Detail}
				}
				return printJSON(cmd.OutOrStdout(), rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AT\tKEY\tACTION\tACTOR\tDETAIL")
			for _, e := range events {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.KeyID, e.Action, e.Actor, orDash(e.Detail))
			}
			return tw.Flush()
		},
	}
	f.register(cmd)
	return cmd
}
