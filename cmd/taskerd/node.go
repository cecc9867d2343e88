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
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/internal/live"
	"github.com/taskerd/taskerd/plugin/host"
)

// node is one engine running in this process, for run and resume.
type node struct {
	plugins     *host.Host // nil without --config
	store       backends.Store
	eng         *engine.Engine
	events      <-chan engine.Event
	unsubscribe func()
}

func startNode(ctx context.Context, flags nodeFlags, catalog *definition.Catalog, stderr io.Writer) (*node, error) {
	// The plugins' lines (and the plugin host's) from --log-level up; the
	// engine's own only from warn up unless debug is asked for: the
	// progress lines on stdout already say what its info lines would.
	out := newLogOutput(stderr, flags.logFormat)
	pluginLog := out.logger(flags.logLevel)
	engineLevel := flags.logLevel
	if engineLevel >= slog.LevelInfo {
		engineLevel = max(engineLevel, slog.LevelWarn)
	}
	logger := out.logger(engineLevel)
	registry := builtin.NewRegistry()
	var plugins *host.Host
	if flags.cfg != nil {
		var err error
		if plugins, err = startPlugins(ctx, flags.cfg, pluginLog); err != nil {
			return nil, err
		}
		if err := plugins.Register(registry); err != nil {
			plugins.Close()
			return nil, &exitError{code: 1, err: err}
		}
	}
	store, err := openStore(ctx, flags.storeFlags)
	if err != nil {
		plugins.Close()
		return nil, err
	}
	nodeID := ""
	if flags.cfg != nil {
		nodeID = flags.cfg.NodeID
	}
	eng, err := engine.New(engine.Config{
		Store:         store,
		Catalog:       catalog,
		Registry:      registry,
		Workers:       flags.workers,
		LeaseDuration: flags.lease,
		NodeID:        nodeID,
		Logger:        logger,
	})
	if err != nil {
		store.Close()
		plugins.Close()
		return nil, &exitError{code: 1, err: err}
	}
	// Subscribe before anything happens so that no event is missed. The
	// buffer is generous; should it ever fill, the poll in follow still sees
	// the task finish.
	events, unsubscribe := eng.Subscribe(4096)
	return &node{plugins: plugins, store: store, eng: eng, events: events, unsubscribe: unsubscribe}, nil
}

func (n *node) close() {
	n.unsubscribe()
	n.store.Close()
	n.plugins.Close() // after the engine stopped: no call is in flight
}

// taskOver reports whether run and resume are done with a task: it is
// finished, or in error (waiting for an operator).
func taskOver(s backends.State) bool { return s.Finished() || s == backends.StateError }

// follow runs the engine until the task is over, printing progress (or, with
// asJSON, one JSON document at the end). With a view, progress is that live
// view (a terminal's), redrawn on the task's events and every liveRefresh,
// instead of a line per event. The first Ctrl-C (or SIGTERM) cancels the
// task and waits for its running steps to stop; a second one quits at once.
// The exit code follows the task: 0 complete (or resolved manually), 1
// otherwise.
func (n *node) follow(ctx context.Context, taskID int64, out, stderr io.Writer, asJSON bool, view *live.Renderer) error {
	runCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	runErr := make(chan error, 1)
	go func() { runErr <- n.eng.Run(runCtx) }()
	stop := func() error {
		stopEngine()
		return <-runErr
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	steps, err := n.store.ListSteps(ctx, taskID)
	if err != nil {
		stop()
		return &exitError{code: 1, err: err}
	}
	p := newProgress(out, taskID, steps)
	var (
		refresh  <-chan time.Time
		lastDraw time.Time
	)
	src := storeSource{store: n.store, taskID: taskID}
	draw := func() error {
		s, err := src.Snapshot(ctx)
		if err != nil {
			return err
		}
		lastDraw = time.Now()
		_ = view.Draw(s) // a terminal that went away is no reason to stop the task
		return nil
	}
	if view != nil {
		t := time.NewTicker(liveRefresh)
		defer t.Stop()
		refresh = t.C
		if err := draw(); err != nil {
			stop()
			return &exitError{code: 1, err: err}
		}
	}

	// The events say when the task is over; a slow poll is the safety net
	// for a dropped event, and for a task that is over before it started.
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	cancelling := false
	over := false
	check := func() error {
		task, err := n.store.GetTask(ctx, taskID)
		if err != nil {
			return err
		}
		if !taskOver(task.State) {
			return nil
		}
		if task.State == backends.StateCancelled {
			// Clean cancellation: wait until no step of the task is still
			// running (their handlers were told to stop).
			steps, err := n.store.ListSteps(ctx, taskID)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(steps, func(s *backends.Step) bool { return s.State == backends.StateInProgress }) {
				return nil
			}
		}
		over = true
		return nil
	}
	if err := check(); err != nil {
		stop()
		return &exitError{code: 1, err: err}
	}
	for !over {
		select {
		case ev := <-n.events:
			switch {
			case view != nil:
				// Events come in bursts: draw at most every 50ms, the
				// refresh catches up with the rest.
				if ev.TaskID == taskID && time.Since(lastDraw) >= 50*time.Millisecond {
					err = draw()
				}
			case !asJSON:
				p.print(ev)
			}
			if err == nil && ev.TaskID == taskID && (ev.Type == engine.EventTaskCompleted || ev.Type == engine.EventTaskFailed ||
				ev.Type == engine.EventTaskCancelled || ev.Type == engine.EventStepCancelled) {
				err = check()
			}
		case <-poll.C:
			err = check()
		case <-refresh:
			err = draw()
		case <-sigs:
			if cancelling {
				stop()
				return &exitError{code: 1, err: errors.New("interrupted again: quitting without waiting; running steps are recovered when their leases expire")}
			}
			cancelling = true
			fmt.Fprintf(stderr, "taskerd: cancelling task %d (Ctrl-C again to quit at once)\n", taskID)
			if _, cerr := n.eng.CancelTask(ctx, taskID, "interrupted from the command line"); cerr != nil && !errors.Is(cerr, backends.ErrInvalidTransition) {
				err = cerr
			} else {
				err = check()
			}
		case rerr := <-runErr:
			if rerr == nil {
				rerr = errors.New("the engine stopped")
			}
			return &exitError{code: 1, err: rerr}
		}
		if err != nil {
			stop()
			return &exitError{code: 1, err: err}
		}
	}
	if err := stop(); err != nil {
		return &exitError{code: 1, err: err}
	}
	// Two writes publish their events in the order they end, not the order
	// they committed: a step's last failure can come after the task failure
	// another step's result caused. Run has returned, so every write has
	// published; print what is still queued before the summary.
	for drained := false; !drained; {
		select {
		case ev := <-n.events:
			if !asJSON && view == nil {
				p.print(ev)
			}
		default:
			drained = true
		}
	}
	if view != nil {
		err := draw()
		_ = view.Close()
		if err != nil {
			return &exitError{code: 1, err: err}
		}
	}
	report, err := n.report(ctx, taskID)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		p.summary(report)
	}
	if !taskSucceeded(report.Status) {
		return &exitError{code: 1}
	}
	return nil
}

// runReport is the --json document.
type runReport struct {
	TaskID               string       `json:"task_id"`
	Workflow             string       `json:"workflow"`
	Status               string       `json:"status"`
	ExecutionStatus      string       `json:"execution_status"`
	HealthStatus         string       `json:"health_status"`
	CompletionPercentage float64      `json:"completion_percentage"`
	Steps                []stepReport `json:"steps"`
}

type stepReport struct {
	Name        string          `json:"name"`
	Status      string          `json:"status"`
	Attempts    int             `json:"attempts"`
	RetryLimit  int             `json:"retry_limit"`
	Result      json.RawMessage `json:"result"`
	Error       json.RawMessage `json:"error"`
	StartedAt   *time.Time      `json:"started_at"`
	CompletedAt *time.Time      `json:"completed_at"`
}

func (n *node) report(ctx context.Context, taskID int64) (*runReport, error) {
	task, err := n.store.GetTask(ctx, taskID)
	if err != nil {
		return nil, err
	}
	steps, err := n.store.ListSteps(ctx, taskID)
	if err != nil {
		return nil, err
	}
	ec, err := n.store.TaskExecutionContext(ctx, taskID, engine.RealClock{}.Now())
	if err != nil {
		return nil, err
	}
	r := &runReport{
		TaskID:               fmt.Sprint(task.ID),
		Workflow:             fmt.Sprintf("%s/%s@%s", task.Namespace, task.WorkflowName, task.WorkflowVersion),
		Status:               string(task.State),
		ExecutionStatus:      ec.ExecutionStatus,
		HealthStatus:         ec.HealthStatus,
		CompletionPercentage: ec.CompletionPercentage,
		Steps:                []stepReport{},
	}
	// ListSteps is in Position order, which is the workflow's topological order.
	for _, s := range steps {
		r.Steps = append(r.Steps, stepReport{
			Name: s.Name, Status: string(s.State), Attempts: s.Attempts, RetryLimit: s.RetryLimit,
			Result: s.Results, Error: s.Error, StartedAt: s.StartedAt, CompletedAt: s.ProcessedAt,
		})
	}
	return r, nil
}

// progress prints one line per event of one task, as a person wants to
// watch it.
type progress struct {
	out    io.Writer
	taskID int64
	width  int
	failed map[int64]engine.Event // retryable failures waiting for their backoff event
}

func newProgress(out io.Writer, taskID int64, steps []*backends.Step) *progress {
	p := &progress{out: out, taskID: taskID, failed: map[int64]engine.Event{}}
	for _, s := range steps {
		p.width = max(p.width, len(s.Name))
	}
	return p
}

func (p *progress) line(step, format string, args ...any) {
	fmt.Fprintf(p.out, "  %-*s  %s\n", p.width, step, fmt.Sprintf(format, args...))
}

func (p *progress) print(ev engine.Event) {
	if ev.TaskID != p.taskID {
		return
	}
	switch ev.Type {
	case engine.EventStepExecutionRequested:
		p.line(ev.StepName, "started (attempt %d/%d)", ev.Attempt, ev.RetryLimit)
	case engine.EventStepCompleted:
		p.line(ev.StepName, "completed in %d ms", ev.DurationMs)
	case engine.EventStepFailed, engine.EventStepLeaseExpired:
		if ev.Retryable {
			p.failed[ev.StepID] = ev // the step.backoff that follows says when
			return
		}
		p.line(ev.StepName, "%s — blocked after %d of %d attempts", failure(ev), ev.Attempt, ev.RetryLimit)
	case engine.EventStepBackoff:
		f, ok := p.failed[ev.StepID]
		delete(p.failed, ev.StepID)
		what := "failed"
		if ok {
			what = failure(f)
		}
		by := ""
		if ev.BackoffKind == engine.BackoffRequested {
			by = " (asked by the handler)"
		}
		wait := time.Duration(ev.BackoffSeconds * float64(time.Second)).Round(time.Millisecond)
		p.line(ev.StepName, "%s — retry %d/%d in %s%s", what, ev.Attempt+1, ev.RetryLimit, wait, by)
	case engine.EventStepCancelled:
		p.line(ev.StepName, "cancelled")
	case engine.EventStepResolvedManually:
		p.line(ev.StepName, "resolved manually")
	case engine.EventTaskCompleted:
		fmt.Fprintf(p.out, "task %d complete\n", p.taskID)
	case engine.EventTaskFailed:
		fmt.Fprintf(p.out, "task %d failed: blocked by %s\n", p.taskID, strings.Join(ev.StepNames, ", "))
	case engine.EventTaskCancelled:
		fmt.Fprintf(p.out, "task %d cancelled\n", p.taskID)
	}
}

func failure(ev engine.Event) string {
	if ev.Type == engine.EventStepLeaseExpired {
		return "lost its node (lease expired)"
	}
	if ev.Error == nil {
		return "failed"
	}
	if ev.Error.Kind == backends.ErrorKindTimeout {
		return "timed out: " + ev.Error.Message
	}
	return "failed: " + ev.Error.Message
}

func (p *progress) summary(r *runReport) {
	fmt.Fprintf(p.out, "%s: %s (%s, %s, %.2f%% complete)\n", r.Workflow, r.Status, r.ExecutionStatus, r.HealthStatus, r.CompletionPercentage)
}
