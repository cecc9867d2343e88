package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// The schedules subcommands are a client of a running taskerd serve, like
// the task ones.

func newSchedulesCmd() *cobra.Command {
	c := &apiClient{http: &http.Client{Timeout: 30 * time.Second}}
	cmd := &cobra.Command{
		Use:     "schedules",
		Aliases: []string{"schedule"},
		Short:   "List, show, pause, resume and trigger schedules through a running taskerd serve",
		Long: `Client commands for the schedules of a running "taskerd serve"
(docs/schedules.md). Schedules are defined in the workflow files; their
paused state is kept in the database, for every node.

--server, --token and --json work as for "taskerd task".`,
	}
	c.addFlags(cmd)
	cmd.AddCommand(c.schedulesListCmd(), c.scheduleShowCmd(), c.scheduleTriggerCmd())
	for _, verb := range []string{"pause", "resume"} {
		cmd.AddCommand(c.scheduleSwitchCmd(verb))
	}
	return cmd
}

type apiSchedule struct {
	Name       string         `json:"name"`
	Workflow   string         `json:"workflow"`
	Cron       string         `json:"cron"`
	Timezone   string         `json:"timezone"`
	Overlap    string         `json:"overlap"`
	CatchUp    string         `json:"catch_up"`
	File       string         `json:"file"`
	Paused     bool           `json:"paused"`
	PausedBy   string         `json:"paused_by"`
	NextFiring *time.Time     `json:"next_firing"`
	LastFiring *apiFiring     `json:"last_firing"`
	Context    map[string]any `json:"context"`
}

type apiFiring struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Outcome string    `json:"outcome"`
	TaskID  *int64    `json:"task_id"`
	Actor   string    `json:"actor"`
}

func schedulePath(name string, verb ...string) string {
	p := "/v1/schedules/" + url.PathEscape(name)
	for _, v := range verb {
		p += "/" + v
	}
	return p
}

func (c *apiClient) schedulesListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the schedules you may see, by name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Schedules []apiSchedule `json:"schedules"`
			}
			raw, err := c.call("GET", "/v1/schedules", nil, &out)
			if err != nil {
				return err
			}
			return c.print(raw, func(w io.Writer) { printSchedules(w, out.Schedules) })
		},
	}
}

func (c *apiClient) scheduleShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a schedule: its rule, state, next and last firing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s apiSchedule
			raw, err := c.call("GET", schedulePath(args[0]), nil, &s)
			if err != nil {
				return err
			}
			return c.print(raw, func(w io.Writer) { printSchedule(w, s) })
		},
	}
}

func (c *apiClient) scheduleSwitchCmd(verb string) *cobra.Command {
	short := "Pause a schedule on every node: its firings are not run (nor caught up later)"
	if verb == "resume" {
		short = "Resume a paused schedule: it fires again from its next instant"
	}
	return &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s apiSchedule
			raw, err := c.call("POST", schedulePath(args[0], verb), nil, &s)
			if err != nil {
				return err
			}
			return c.print(raw, func(w io.Writer) { printSchedule(w, s) })
		},
	}
}

func (c *apiClient) scheduleTriggerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "trigger NAME",
		Short: "Fire a schedule now (paused or not) and print the task it created",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				Task apiTask `json:"task"`
			}
			raw, err := c.call("POST", schedulePath(args[0], "trigger"), nil, &out)
			if err != nil {
				return err
			}
			return c.print(raw, func(w io.Writer) { printTasks(w, []apiTask{out.Task}) })
		},
	}
}

func printSchedules(w io.Writer, schedules []apiSchedule) {
	fmt.Fprintln(w, "NAME\tWORKFLOW\tCRON\tTIMEZONE\tSTATE\tNEXT\tLAST")
	for _, s := range schedules {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Workflow, s.Cron, s.Timezone, scheduleState(s),
			timeOrDash(s.NextFiring), lastFiring(s.LastFiring))
	}
}

func printSchedule(w io.Writer, s apiSchedule) {
	fmt.Fprintf(w, "schedule %s\t%s\n", s.Name, s.File)
	fmt.Fprintf(w, "workflow\t%s\n", s.Workflow)
	fmt.Fprintf(w, "cron\t%s (%s)\n", s.Cron, s.Timezone)
	fmt.Fprintf(w, "overlap\t%s\n", s.Overlap)
	fmt.Fprintf(w, "catch_up\t%s\n", s.CatchUp)
	fmt.Fprintf(w, "state\t%s\n", scheduleState(s))
	fmt.Fprintf(w, "next firing\t%s\n", timeOrDash(s.NextFiring))
	fmt.Fprintf(w, "last firing\t%s\n", lastFiring(s.LastFiring))
}

func scheduleState(s apiSchedule) string {
	if !s.Paused {
		return "active"
	}
	if s.PausedBy != "" {
		return "paused by " + s.PausedBy
	}
	return "paused"
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func lastFiring(f *apiFiring) string {
	if f == nil {
		return "-"
	}
	s := f.At.UTC().Format(time.RFC3339) + " " + f.Kind + " " + f.Outcome
	if f.TaskID != nil {
		s += fmt.Sprintf(" task %d", *f.TaskID)
	}
	return s
}
