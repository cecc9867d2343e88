package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/internal/bench"
	"github.com/taskerd/taskerd/internal/logging"
	"github.com/taskerd/taskerd/plugin"
	"github.com/taskerd/taskerd/plugin/host"
)

// benchPluginCmd is the hidden subcommand that makes this binary the no-op
// plugin of bench's plugin-1 scenario.
const benchPluginCmd = "bench-plugin"

type benchFlags struct {
	db       string
	scenario string
	tasks    int
	workers  int
	nodes    int
	duration time.Duration
	rate     float64
	json     bool
	force    bool
	// cpuProfile is --cpuprofile's file ("" for none).
	cpuProfile string
}

func newBenchCmd() *cobra.Command {
	var f benchFlags
	var about strings.Builder
	for _, name := range bench.Scenarios() {
		fmt.Fprintf(&about, "  %-12s %s\n", name, bench.About(name))
	}
	cmd := &cobra.Command{
		Use:   "bench [--db DSN] [--scenario NAME] [--tasks N] [--workers N] [--nodes N] [--duration D] [--rate R] [--json] [--force]",
		Short: "Measure this node: run a workload on a database of its own and report throughput and latencies",
		Long: `Run a workload on one engine node in this process and report what it
measured: steps/s, tasks/s, ready->running p50/p95/p99 (a step's ready time
to its handler's start), step overhead (ready to result recorded, minus the
handler's time), the execution-context query's p50, and peak RSS; for
fanout-50 also the spread from the root's result to the last branch's
start, for api-create the HTTP side.

Scenarios (--scenario, default noop-1):
` + about.String() + `
The database is a throwaway SQLite file (synchronous=normal) in a temporary
directory, removed afterwards, unless --db names one: sqlite:?PARAMS (a
throwaway file with those parameters), sqlite:PATH (kept), or a PostgreSQL
DSN, in which the bench creates a schema of its own (taskerd_bench_PID_...)
and drops it afterwards, unless the DSN names one (search_path=NAME: used
and kept). TASKERD_DATABASE is not read. A database that already holds
tasks (or a SQLite file of another program) is refused (exit 2) unless
--force.

--nodes N (PostgreSQL) runs N engines in this process, each with --workers
workers and a connection pool of its own, sharing the work as N taskerd
nodes on one database do (claims, wake-ups); they share this machine's
cores with each other and with the database.

--duration D runs for D instead of --tasks, creating tasks as it goes (4
clients keeping about 2,000 steps waiting; fanout-50 one at a time;
api-create at --rate), then waits for those tasks.
A progress bar is drawn on stderr when it is a terminal. --json prints
one JSON object on stdout instead of the table.

Exit codes: 0 measured; 1 the run failed (a task did not complete, the
database or the plugin failed, Ctrl-C); 2 bad flags or a refused database.`,
		Example: `  taskerd bench
  taskerd bench --scenario fanout-50 --json
  taskerd bench --scenario api-create --rate 200 --duration 30s
  taskerd bench --db postgres://root@127.0.0.1:5432/bench --scenario linear-10
  taskerd bench --db postgres://root@127.0.0.1:5432/bench --nodes 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.db, "db", "", "database: sqlite:PATH, sqlite:?synchronous=full (throwaway), or postgres://... (a schema of its own); default a throwaway SQLite file, synchronous=normal")
	fl.StringVar(&f.scenario, "scenario", "noop-1", "workload: "+strings.Join(bench.Scenarios(), ", "))
	fl.IntVar(&f.tasks, "tasks", 0, "tasks to run (default per scenario, see above)")
	fl.IntVar(&f.workers, "workers", bench.DefaultWorkers, "the engine's workers: steps executed at once")
	fl.IntVar(&f.nodes, "nodes", 1, "engines sharing the work, each with --workers and a connection pool of its own, in this process (PostgreSQL only)")
	fl.DurationVar(&f.duration, "duration", 0, "run for this long instead of --tasks, creating tasks as it goes")
	fl.Float64Var(&f.rate, "rate", bench.DefaultRate, "api-create: POST /v1/tasks offered per second (open loop)")
	fl.BoolVar(&f.json, "json", false, "print one JSON object instead of the table")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the timed run to this file (go tool pprof)")
	fl.BoolVar(&f.force, "force", false, "run on a database that already holds tasks (or another program's SQLite file)")
	return cmd
}

// newBenchPluginCmd serves the no-op step handler "noop" as a plugin:
// bench starts this binary so (checksum verified, as every plugin's) for
// plugin-1, which then needs no plugin built apart.
func newBenchPluginCmd() *cobra.Command {
	return &cobra.Command{
		Use:    benchPluginCmd,
		Short:  "The no-op step-handler plugin taskerd bench starts for plugin-1",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			plugin.Serve(plugin.Handlers{"noop": func(context.Context, *plugin.Request) (any, error) { return nil, nil }})
			return nil
		},
	}
}

func runBench(cmd *cobra.Command, f *benchFlags) error {
	changed := cmd.Flags().Changed
	valid := bench.Scenarios()
	known := false
	for _, s := range valid {
		known = known || s == f.scenario
	}
	switch {
	case !known:
		return usageErrorf("--scenario %q: want one of %s", f.scenario, strings.Join(valid, ", "))
	case changed("tasks") && changed("duration"):
		return usageErrorf("--tasks and --duration: give one of them")
	case changed("tasks") && f.tasks < 1:
		return usageErrorf("--tasks must be at least 1, not %d", f.tasks)
	case f.workers < 1:
		return usageErrorf("--workers must be at least 1, not %d", f.workers)
	case f.nodes < 1 || f.nodes > bench.MaxNodes:
		return usageErrorf("--nodes must be from 1 to %d, not %d", bench.MaxNodes, f.nodes)
	case changed("duration") && f.duration <= 0:
		return usageErrorf("--duration must be more than 0, not %s", f.duration)
	case f.rate <= 0:
		return usageErrorf("--rate must be more than 0, not %g", f.rate)
	case changed("rate") && f.scenario != "api-create":
		return usageErrorf("--rate is api-create's; --scenario is %s", f.scenario)
	}
	stderr := cmd.ErrOrStderr()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts := bench.Options{Scenario: f.scenario, Tasks: f.tasks, Workers: f.workers, Nodes: f.nodes, Duration: f.duration, Rate: f.rate}
	if f.cpuProfile != "" {
		out, err := os.Create(f.cpuProfile)
		if err != nil {
			return usageErrorf("--cpuprofile: %s", err)
		}
		defer out.Close()
		opts.CPUProfile = out
	}
	if f.scenario == "plugin-1" {
		spec, err := benchPluginSpec()
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		opts.Plugin = spec
	}

	var bar *progressBar
	logOut := stderr
	if logging.IsTerminal(stderr) && os.Getenv("TERM") != "dumb" {
		bar = &progressBar{w: stderr}
		logOut = bar
		opts.Progress = bar.draw
	}
	// The node's warnings and errors only: a line per task would be noise.
	opts.Logger = slog.New(logging.NewHandler(logOut, "text", slog.LevelWarn))

	db, err := bench.OpenDatabase(ctx, f.db, f.force)
	if err != nil {
		return benchError(err)
	}
	opts.DB = db
	res, err := bench.Run(ctx, opts)
	bar.clear()
	if cerr := db.Close(); cerr != nil {
		fmt.Fprintf(stderr, "taskerd: warning: cleaning up the bench database: %s\n", oneLine(cerr))
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return &exitError{code: 1, err: errors.New("bench interrupted")}
		}
		return benchError(err)
	}
	out := cmd.OutOrStdout()
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return printBench(out, res)
}

// benchError is exit 2 for what the caller must fix, 1 for the rest; one
// line either way.
func benchError(err error) error {
	var ue *bench.UsageError
	if errors.As(err, &ue) {
		return usageErrorf("%s", oneLine(err))
	}
	return &exitError{code: 1, err: oneLine(err)}
}

// benchPluginSpec is this very binary, started as bench-plugin, with the
// SHA-256 of its file: verified at launch like any plugin's.
func benchPluginSpec() (*host.Spec, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("plugin-1 starts this binary as its plugin: %w", err)
	}
	sum, err := host.FileSHA256(exe)
	if err != nil {
		return nil, fmt.Errorf("plugin-1 starts this binary as its plugin: %w", err)
	}
	return &host.Spec{Path: exe, SHA256: sum, Args: []string{benchPluginCmd}}, nil
}

// printBench writes the result as a small table for people.
func printBench(w io.Writer, r *bench.Result) error {
	created := map[string]string{"before": "created before the run", "live": "created while it runs by 4 clients",
		"serial": "run one at a time", "api": "created by POST /v1/tasks"}[r.Created]
	fmt.Fprintf(w, "taskerd bench %s: %s\n", r.Scenario, r.Where)
	workers := fmt.Sprintf("%d workers", r.Workers)
	if r.Nodes > 1 {
		workers = fmt.Sprintf("%d nodes of %d workers", r.Nodes, r.Workers)
	}
	fmt.Fprintf(w, "%s of %s (%s, %s), %s; %s, %d cores\n\n",
		plural(r.Tasks, "task"), plural(r.StepsPerTask, "step"), plural(r.Steps, "step"), plural(r.Attempts, "handler call"), created, workers, r.Cores)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "steps/s\t%.1f\n", r.StepsPerS)
	fmt.Fprintf(tw, "tasks/s\t%.1f\n", r.TasksPerS)
	fmt.Fprintf(tw, "elapsed\t%.3f s\n", r.ElapsedS)
	if len(r.NodeStarts) > 0 {
		per := make([]string, len(r.NodeStarts))
		for i, n := range r.NodeStarts {
			per[i] = strconv.FormatInt(n, 10)
		}
		fmt.Fprintf(tw, "handler starts per node\t%s\n", strings.Join(per, " / "))
	}
	rss := "n/a"
	if r.PeakRSSMiB != nil {
		rss = fmt.Sprintf("%.1f MiB", *r.PeakRSSMiB)
	}
	fmt.Fprintf(tw, "peak RSS\t%s\n", rss)
	if h := r.HTTP; h != nil {
		fmt.Fprintf(tw, "HTTP rate\toffered %g/s, achieved %.1f/s\n", h.OfferedRate, h.AchievedRate)
		fmt.Fprintf(tw, "HTTP requests\t%d: %d created, %d errors, %d late\n", h.Requests, h.OK, h.Errors, h.Late)
		if h.FirstError != "" {
			fmt.Fprintf(tw, "first error\t%s\n", h.FirstError)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-20s %10s %10s %10s %10s %7s\n", "ms", "p50", "p95", "p99", "max", "n")
	row := func(name string, p *bench.Percentiles) {
		if p == nil {
			fmt.Fprintf(w, "%-20s %10s %10s %10s %10s %7d\n", name, "n/a", "", "", "", 0)
			return
		}
		fmt.Fprintf(w, "%-20s %10.3f %10.3f %10.3f %10.3f %7d\n", name, p.P50, p.P95, p.P99, p.Max, p.N)
	}
	row("ready->running", r.ReadyToRunning)
	row("step overhead", r.StepOverhead)
	row("  to commit", r.StepOverheadCommitted)
	row("exec-context query", r.ExecContext)
	if r.Scenario == "fanout-50" {
		row("root->last branch", r.FanoutSpread)
	}
	if r.HTTP != nil {
		row("HTTP POST", r.HTTP.Latency)
	}
	return nil
}

// progressBar draws the run's progress in place on a terminal's stderr.
// Lines written through it (the node's warnings) go above the bar.
type progressBar struct {
	mu   sync.Mutex
	w    io.Writer
	last string
}

const barWidth = 30

func (p *progressBar) draw(pr bench.Progress) {
	frac, what := 0.0, ""
	if pr.Total > 0 {
		frac = float64(pr.Done) / float64(pr.Total)
		what = fmt.Sprintf("%d/%d tasks", pr.Done, pr.Total)
	} else if pr.Duration > 0 {
		frac = min(float64(pr.Elapsed)/float64(pr.Duration), 1)
		what = fmt.Sprintf("%s/%s, %d tasks", pr.Elapsed.Truncate(100*time.Millisecond), pr.Duration, pr.Done)
	}
	rate := 0.0
	if pr.Elapsed > 0 {
		rate = float64(pr.Steps) / pr.Elapsed.Seconds()
	}
	n := int(frac * barWidth)
	line := fmt.Sprintf("[%s%s] %s  %.0f steps/s", strings.Repeat("#", n), strings.Repeat(".", barWidth-n), what, rate)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = line
	fmt.Fprint(p.w, "\r\033[K"+line)
}

// Write puts a log line above the bar.
func (p *progressBar) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, "\r\033[K")
	n, err := p.w.Write(b)
	if p.last != "" {
		fmt.Fprint(p.w, p.last)
	}
	return n, err
}

// clear removes the bar; a nil bar does nothing.
func (p *progressBar) clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != "" {
		fmt.Fprint(p.w, "\r\033[K")
		p.last = ""
	}
}
