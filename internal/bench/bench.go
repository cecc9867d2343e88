// Package bench runs the scenarios of `taskerd bench`: a workload on one
// engine node in this process, on a database of its own, and what it
// measured: steps and tasks per second, the delay from a step becoming
// ready to its handler starting, the step's overhead (ready to result
// recorded, minus the handler's own time), the execution-context query,
// the peak RSS, and for api-create the HTTP side.
//
// It measures the way engine's BenchmarkThroughput does (a handler that
// notes when it is called, "ready" read back from the store afterwards),
// for more shapes and with a command around it. It is a package of its own
// rather than code in cmd/taskerd so that the runner (workloads,
// bookkeeping, analysis) stays apart from the CLI's concerns (flags, exit
// codes, the progress bar, the table), and so that the database handling
// (a throwaway file, a PostgreSQL schema of its own, refusing a database
// that holds tasks) has one implementation. BenchmarkThroughput keeps its
// own code on purpose: scripts/ab.sh compares its figures between commits
// built before this package existed, and routing it through this runner
// (its context-query sampler, its per-attempt bookkeeping) would change
// what it measures.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/eventlog"
	"github.com/taskerd/taskerd/plugin/host"
)

// Options say what to run, where.
type Options struct {
	DB       *Database
	Scenario string
	// Tasks is how many tasks to run; 0 is the scenario's default.
	// Ignored under Duration.
	Tasks int
	// Workers is the engine's; 0 is DefaultWorkers.
	Workers int
	// Nodes is how many engines run the scenario, each with Workers
	// workers and a store (a connection pool) of its own on the database,
	// as that many taskerd nodes sharing one PostgreSQL database would,
	// but in this process; 0 is 1. More than 1 needs PostgreSQL.
	Nodes int
	// Duration, when > 0, runs the scenario for that long, creating tasks
	// as it goes (4 clients keeping a backlog of about 2,000 steps;
	// fanout-50 one at a time; api-create at Rate), instead of Tasks; the
	// tasks created by then are waited for.
	Duration time.Duration
	// Rate is api-create's offered rate, requests per second; 0 is
	// DefaultRate.
	Rate float64
	// CPUProfile, when set, receives a CPU profile (runtime/pprof) of the
	// timed part of the run: from the engine's start to the last task
	// finished, not the creation of tasks before it nor the analysis.
	CPUProfile io.Writer
	// Plugin is plugin-1's plugin: an executable serving a handler "noop"
	// that returns at once. Its Name is set to PluginName.
	Plugin *host.Spec
	// Logger gets the engine's, the API's and the plugin host's lines; nil
	// discards them.
	Logger *slog.Logger
	// Progress, when set, is called every ProgressInterval while the
	// scenario runs, from a goroutine of Run's, and once at the end.
	Progress func(Progress)
}

// ProgressInterval is how often Options.Progress is called.
const ProgressInterval = 200 * time.Millisecond

// Progress is how far a run is.
type Progress struct {
	// Done is the tasks finished; Total the tasks to run (0 under a
	// Duration: Elapsed against Duration says how far).
	Done, Total int
	// Steps is the steps of the finished tasks.
	Steps             int
	Elapsed, Duration time.Duration
}

// stallTimeout ends a run in which no task finished for that long.
const stallTimeout = time.Minute

// maxAnalyzed bounds the tasks read back for the latencies: a long
// --duration run reads an evenly spread sample of this many.
const maxAnalyzed = 20000

// contextSampleEvery is how often the execution context of a random task
// of the run is read, and timed, while it runs.
const contextSampleEvery = 20 * time.Millisecond

// Run runs one scenario to the end and returns what it measured. Errors:
// a *UsageError for options that make no sense; anything else (a task
// that did not complete, the engine or the plugin failing, ctx done) is
// the run's failure.
func Run(ctx context.Context, o Options) (*Result, error) {
	sc := lookup(o.Scenario)
	if sc == nil {
		return nil, usageErrorf("--scenario %q: want one of %s", o.Scenario, strings.Join(Scenarios(), ", "))
	}
	if o.DB == nil {
		return nil, errors.New("bench: Options.DB is required")
	}
	if o.Tasks == 0 {
		o.Tasks = sc.defaultTasks
	}
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	switch {
	case o.Tasks < 1:
		return nil, usageErrorf("--tasks must be at least 1, not %d", o.Tasks)
	case o.Workers < 1:
		return nil, usageErrorf("--workers must be at least 1, not %d", o.Workers)
	case o.Nodes < 1 || o.Nodes > MaxNodes:
		return nil, usageErrorf("--nodes must be from 1 to %d, not %d", MaxNodes, o.Nodes)
	case o.Nodes > 1 && o.DB.openAnother == nil:
		return nil, usageErrorf("--nodes %d needs a PostgreSQL --db: a SQLite database has one node", o.Nodes)
	case o.Duration < 0:
		return nil, usageErrorf("--duration must not be negative, not %s", o.Duration)
	case o.Rate < 0:
		return nil, usageErrorf("--rate must be more than 0, not %g", o.Rate)
	case sc.handler == PluginName+".noop" && o.Plugin == nil:
		return nil, errors.New("bench: plugin-1 needs Options.Plugin")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if sc.handler == flakyHandler {
		// Every step of retry fails once on purpose: no warning for it.
		o.Logger = slog.New(dropRetryWarnings{o.Logger.Handler()})
	}
	ws, diags := definition.NewParser().ParseSource(sc.name+".hcl", []byte(sc.hcl()))
	if diags.HasErrors() {
		return nil, fmt.Errorf("bench: the %s workflow does not parse: %s", sc.name, diags.Error())
	}
	r := &runner{o: o, sc: sc, wf: ws[0], store: o.DB.Store, calls: newCallLog(), track: newTracker()}
	return r.run(ctx, ws)
}

// MaxNodes bounds Options.Nodes.
const MaxNodes = 8

type runner struct {
	o     Options
	sc    *scenario
	wf    *definition.Workflow
	store backends.Store
	eng   *engine.Engine
	// others are the engines of the other nodes (Options.Nodes).
	others []*engine.Engine
	calls  *callLog
	track  *tracker

	// start is when the engine started: the measured run's start (the
	// tasks created while it runs are created from then on).
	start time.Time

	ctxMu      sync.Mutex
	ctxSamples []time.Duration
}

func (r *runner) run(ctx context.Context, ws []*definition.Workflow) (res *Result, err error) {
	reg := engine.NewRegistry()
	if err := reg.Register(noopHandler, r.timed(engine.HandlerFunc(noop))); err != nil {
		return nil, err
	}
	if err := reg.Register(flakyHandler, r.timed(engine.HandlerFunc(flaky))); err != nil {
		return nil, err
	}
	if r.o.Plugin != nil && r.sc.handler == PluginName+".noop" {
		spec := *r.o.Plugin
		spec.Name = PluginName
		plugins, err := host.Start(ctx, []host.Spec{spec}, host.Options{Logger: r.o.Logger})
		if err != nil {
			return nil, err
		}
		// Closed after the engine stopped (deferred first, run last).
		defer plugins.Close()
		p, _ := plugins.Plugin(PluginName)
		if err := reg.Register(r.sc.handler, r.timed(p.Handler("noop"))); err != nil {
			return nil, err
		}
	}

	hub := eventlog.NewHub(r.store, 0)
	r.eng, err = engine.New(engine.Config{Store: r.store, Catalog: definition.NewCatalog(ws), Registry: reg,
		Workers: r.o.Workers, Logger: r.o.Logger, Events: hub})
	if err != nil {
		return nil, err
	}
	if missing := engine.MissingHandlers(r.wf, reg); len(missing) > 0 {
		return nil, fmt.Errorf("bench: no handler %s", strings.Join(missing, ", "))
	}
	// The buffer's pages count in the peak RSS (1<<16 events added some
	// 16 MiB): 8,192 is plenty for a reader that only counts; should it
	// ever fill, wait asks the store.
	events, unsubscribe := r.eng.Subscribe(1 << 13)
	defer unsubscribe()
	go r.track.consume(events, 0)
	for i := 2; i <= r.o.Nodes; i++ {
		store, err := r.o.DB.openAnother(ctx)
		if err != nil {
			return nil, fmt.Errorf("opening node %d's store: %w", i, err)
		}
		defer store.Close()
		eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(ws), Registry: reg,
			Workers: r.o.Workers, Logger: r.o.Logger, NodeID: fmt.Sprintf("bench-%d", i)})
		if err != nil {
			return nil, err
		}
		// A task's last events are published by the node that wrote them.
		events, unsubscribe := eng.Subscribe(1 << 13)
		defer unsubscribe()
		go r.track.consume(events, i-1)
		r.others = append(r.others, eng)
	}
	dropped := r.droppedEvents()

	var api *apiServer
	if r.sc.created == createdAPI {
		if api, err = startAPI(r.eng, hub, r.o.Logger); err != nil {
			return nil, err
		}
		defer api.close()
	}

	// Everything below stops when run returns: the creators, the engine.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	createErr := make(chan error, clients+1)
	var creators sync.WaitGroup
	var deadline time.Time

	if r.o.Duration > 0 {
		backlog := max(clients, 2000/len(r.sc.steps))
		r.track.slots = make(chan struct{}, backlog)
		if r.sc.created == createdBefore {
			if err := r.createBefore(runCtx, backlog, true); err != nil {
				return nil, err
			}
		}
	} else if r.sc.created == createdBefore {
		if err := r.createBefore(runCtx, r.o.Tasks, false); err != nil {
			return nil, err
		}
		r.track.closeCreation()
	}

	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	// Every node's Run ends in results; the first to end (before stop,
	// a failure) also in runDone, for wait.
	results := make(chan error, r.o.Nodes)
	runDone := make(chan error, 1)
	profiling := false
	if r.o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(r.o.CPUProfile); err != nil {
			return nil, fmt.Errorf("starting the CPU profile: %w", err)
		}
		profiling = true
		defer func() {
			if profiling {
				pprof.StopCPUProfile()
			}
		}()
	}
	r.start = time.Now()
	if r.o.Duration > 0 {
		deadline = r.start.Add(r.o.Duration)
	}
	for _, eng := range append([]*engine.Engine{r.eng}, r.others...) {
		go func() {
			err := eng.Run(engineCtx)
			select {
			case runDone <- err:
			default:
			}
			results <- err
		}()
	}
	engineStopped := false
	stop := func() error {
		if engineStopped {
			return nil
		}
		engineStopped = true
		stopEngine()
		var first error
		for range r.o.Nodes {
			if err := <-results; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	defer func() { _ = stop() }()

	var httpRes *HTTPResult
	switch {
	case r.sc.created == createdAPI:
		creators.Go(func() {
			n := r.o.Tasks
			if r.o.Duration > 0 {
				n = 0
			}
			httpRes = r.apiLoad(runCtx, api.url, n, deadline)
			if httpRes.OK == 0 {
				createErr <- fmt.Errorf("no POST /v1/tasks succeeded (%d errors, the first: %s)", httpRes.Errors, httpRes.FirstError)
			}
			r.track.closeCreation()
		})
	case r.sc.created == createdSerial:
		creators.Go(func() {
			if err := r.serial(runCtx, deadline); err != nil {
				createErr <- err
			}
			r.track.closeCreation()
		})
	case r.o.Duration > 0:
		for range clients {
			creators.Go(func() {
				if err := r.feed(runCtx, deadline); err != nil {
					createErr <- err
				}
			})
		}
		go func() { creators.Wait(); r.track.closeCreation() }()
	case r.sc.created == createdLive:
		for c := range clients {
			n := r.o.Tasks/clients + boolInt(c < r.o.Tasks%clients)
			creators.Go(func() {
				for range n {
					id, err := r.create(runCtx)
					if err != nil {
						createErr <- err
						return
					}
					r.track.add(id)
				}
			})
		}
		go func() { creators.Wait(); r.track.closeCreation() }()
	}

	samplerDone := make(chan struct{})
	stopSampler := make(chan struct{})
	go func() { defer close(samplerDone); r.sampleContexts(ctx, stopSampler) }()
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() { defer close(progressDone); r.report(stopProgress) }()
	stopHelpers := func() {
		close(stopSampler)
		close(stopProgress)
		<-samplerDone
		<-progressDone
	}

	waitErr := r.wait(ctx, runDone, createErr, dropped)
	end := r.track.lastFinish()
	if profiling {
		pprof.StopCPUProfile()
		profiling = false
	}
	cancel()
	creators.Wait()
	stopHelpers()
	if err := stop(); err != nil && waitErr == nil {
		waitErr = fmt.Errorf("engine: %w", err)
	}
	if waitErr != nil {
		return nil, waitErr
	}
	if r.o.Progress != nil {
		r.o.Progress(r.progress())
	}
	if created, _ := r.track.counts(); created == 0 {
		return nil, errors.New("no task was created")
	}
	return r.analyze(ctx, end, httpRes)
}

// dropRetryWarnings drops the engine's "step failed; retrying" lines.
type dropRetryWarnings struct{ slog.Handler }

func (h dropRetryWarnings) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == retryWarning {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h dropRetryWarnings) WithAttrs(attrs []slog.Attr) slog.Handler {
	return dropRetryWarnings{h.Handler.WithAttrs(attrs)}
}

func (h dropRetryWarnings) WithGroup(name string) slog.Handler {
	return dropRetryWarnings{h.Handler.WithGroup(name)}
}

// retryWarning is the engine's message for a failed attempt it retries.
const retryWarning = "step failed; retrying"

func noop(context.Context, *engine.StepRequest) (json.RawMessage, error) { return nil, nil }

// flaky fails every step's first attempt, retryably.
func flaky(_ context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	if req.Attempt == 1 {
		return nil, engine.Retryable(errors.New("bench: the first attempt of every step fails"))
	}
	return nil, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// create creates one task of the scenario's workflow.
func (r *runner) create(ctx context.Context) (int64, error) {
	task, _, err := r.eng.CreateTask(ctx, engine.CreateRequest{Workflow: r.wf.ID(), Initiator: "taskerd bench", SourceSystem: "cli"})
	if err != nil {
		return 0, fmt.Errorf("creating a task: %w", err)
	}
	return task.ID, nil
}

// createBefore creates n tasks before the engine starts, from several
// clients (taking a backlog slot for each when slots).
func (r *runner) createBefore(ctx context.Context, n int, slots bool) error {
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for c := range clients {
		k := n/clients + boolInt(c < n%clients)
		wg.Go(func() {
			for range k {
				if slots {
					r.track.slots <- struct{}{}
				}
				id, err := r.create(ctx)
				if err != nil {
					errs[c] = err
					return
				}
				r.track.add(id)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// serial creates the tasks one at a time, each once the previous one
// finished: r.o.Tasks of them, or under a Duration until deadline.
func (r *runner) serial(ctx context.Context, deadline time.Time) error {
	for i := 0; ; i++ {
		if r.o.Duration > 0 && !time.Now().Before(deadline) || r.o.Duration == 0 && i == r.o.Tasks {
			return nil
		}
		id, err := r.createTracked(ctx)
		if id == 0 {
			return err
		}
		if _, err := r.eng.WaitTask(ctx, id); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// feed creates tasks until deadline, while fewer than the backlog are
// unfinished.
func (r *runner) feed(ctx context.Context, deadline time.Time) error {
	until := time.NewTimer(time.Until(deadline))
	defer until.Stop()
	for {
		select {
		case r.track.slots <- struct{}{}:
		case <-until.C:
			return nil
		case <-ctx.Done():
			return nil
		}
		if !time.Now().Before(deadline) {
			<-r.track.slots
			return nil
		}
		if id, err := r.createTracked(ctx); id == 0 {
			return err
		}
	}
}

// createTracked creates one task and tracks it, and returns its id; 0 when
// none was created, with the error, or nil when ctx ended (the run is
// over, which is no failure).
func (r *runner) createTracked(ctx context.Context) (int64, error) {
	id, err := r.create(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil
		}
		return 0, err
	}
	r.track.add(id)
	return id, nil
}

// wait waits for every task created to finish, or a reason to give up.
func (r *runner) wait(ctx context.Context, runDone <-chan error, createErr <-chan error, dropped int64) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastDone, lastChange := 0, time.Now()
	for {
		done, finished, failed := r.track.state()
		if failed != nil {
			return r.explain(ctx, failed)
		}
		if finished {
			select {
			case err := <-createErr: // a creator gave up: fewer tasks than asked
				return err
			default:
				return nil
			}
		}
		if done != lastDone {
			lastDone, lastChange = done, time.Now()
		}
		select {
		case <-r.track.changed:
		case err := <-createErr:
			return err
		case err := <-runDone:
			if err == nil {
				err = errors.New("stopped")
			}
			return fmt.Errorf("engine: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if r.droppedEvents() > dropped {
				// The events of some tasks may be lost: ask the store.
				if err := r.track.poll(ctx, r.store); err != nil {
					return err
				}
			}
			if time.Since(lastChange) > stallTimeout {
				total, _ := r.track.counts()
				return fmt.Errorf("no task finished in %s (%d of %d done)", stallTimeout, done, total)
			}
		}
	}
}

// droppedEvents counts the events every node's subscription dropped.
func (r *runner) droppedEvents() int64 {
	n := r.eng.DroppedEvents()
	for _, eng := range r.others {
		n += eng.DroppedEvents()
	}
	return n
}

// explain turns a task that did not complete into an error that says why.
func (r *runner) explain(ctx context.Context, f *taskFailure) error {
	msg := fmt.Sprintf("task %d ended %s, not complete", f.id, f.state)
	steps, err := r.store.ListSteps(ctx, f.id)
	if err == nil {
		for _, s := range steps {
			var se backends.StepError
			if s.State != backends.StateComplete && len(s.Error) > 0 && json.Unmarshal(s.Error, &se) == nil {
				msg += fmt.Sprintf(": step %s: %s", s.Name, se.Message)
				break
			}
		}
	}
	return errors.New(msg)
}

// sampleContexts times the execution-context query of a random task of
// the run every contextSampleEvery until stop.
func (r *runner) sampleContexts(ctx context.Context, stop <-chan struct{}) {
	sampled := false
	sample := func() bool {
		id, ok := r.track.randomID()
		if !ok {
			return false
		}
		t0 := time.Now()
		if _, err := r.store.TaskExecutionContext(ctx, id, t0); err == nil {
			took := time.Since(t0)
			r.ctxMu.Lock()
			r.ctxSamples = append(r.ctxSamples, took)
			r.ctxMu.Unlock()
			sampled = true
		}
		return true
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			if !sampled {
				// A run shorter than the first tick: one sample now,
				// the engine still running.
				sample()
			}
			return
		case <-timer.C:
		}
		// Until the first task exists (tasks created while the run
		// goes), look again soon.
		next := time.Millisecond
		if sample() {
			next = contextSampleEvery
		}
		timer.Reset(next)
	}
}

func (r *runner) report(stop <-chan struct{}) {
	if r.o.Progress == nil {
		return
	}
	tick := time.NewTicker(ProgressInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			r.o.Progress(r.progress())
		}
	}
}

func (r *runner) progress() Progress {
	done, _, _ := r.track.state()
	p := Progress{Done: done, Steps: done * len(r.sc.steps), Elapsed: time.Since(r.start), Duration: r.o.Duration}
	if r.o.Duration == 0 {
		p.Total = r.o.Tasks
	}
	return p
}

// timed wraps h to note when each attempt started and how long it took.
func (r *runner) timed(h engine.Handler) engine.Handler { return timedHandler{h: h, calls: r.calls} }

type timedHandler struct {
	h     engine.Handler
	calls *callLog
}

func (t timedHandler) Execute(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	start := time.Now()
	res, err := t.h.Execute(ctx, req)
	t.calls.put(req.StepID, req.Attempt, start, time.Since(start))
	return res, err
}

// Unwrap is the handler timed: the engine finds its optional interfaces
// (engine.RetryHook) through it.
func (t timedHandler) Unwrap() engine.Handler { return t.h }

type callKey struct {
	step    int64
	attempt int
}

type call struct {
	start time.Time
	took  time.Duration
}

type callLog struct {
	mu sync.Mutex
	m  map[callKey]call
}

func newCallLog() *callLog { return &callLog{m: map[callKey]call{}} }

func (l *callLog) put(step int64, attempt int, start time.Time, took time.Duration) {
	l.mu.Lock()
	l.m[callKey{step, attempt}] = call{start, took}
	l.mu.Unlock()
}

func (l *callLog) get(step int64, attempt int) (call, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.m[callKey{step, attempt}]
	return c, ok
}

// tracker follows the tasks of the run to their end, from the engine's
// events (and from the store when events were dropped).
type tracker struct {
	mu sync.Mutex
	// ours holds every task the run created: true once finished.
	ours map[int64]bool
	ids  []int64
	// early are tasks that finished before their creation returned (or
	// tasks of someone else, under --force), with how they ended.
	early   map[int64]backends.EventType
	done    int
	last    time.Time
	closed  bool // every task is created
	failure *taskFailure
	changed chan struct{}
	slots   chan struct{} // the backlog under a Duration; nil otherwise
	rnd     *rand.Rand

	// committed is when each step's step.completed event arrived.
	committedMu sync.Mutex
	committed   map[int64]time.Time

	// started counts the handler starts (step.execution_requested) of
	// each node, by its number from 0.
	started [MaxNodes]atomic.Int64
}

type taskFailure struct {
	id    int64
	state string
}

func newTracker() *tracker {
	return &tracker{ours: map[int64]bool{}, early: map[int64]backends.EventType{}, changed: make(chan struct{}, 1), committed: map[int64]time.Time{},
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

func (t *tracker) signal() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *tracker) add(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ids = append(t.ids, id)
	typ, early := t.early[id]
	if !early {
		t.ours[id] = false
		return
	}
	delete(t.early, id)
	t.finishLocked(id, typ)
}

func (t *tracker) finished(id int64, typ backends.EventType) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fin, ours := t.ours[id]
	switch {
	case !ours:
		t.early[id] = typ
	case !fin:
		t.finishLocked(id, typ)
	}
}

func (t *tracker) finishLocked(id int64, typ backends.EventType) {
	t.ours[id] = true
	if t.slots != nil {
		select {
		case <-t.slots:
		default:
		}
	}
	if typ != backends.EventTaskCompleted && t.failure == nil {
		t.failure = &taskFailure{id: id, state: strings.TrimPrefix(string(typ), "task.")}
	}
	t.done++
	t.last = time.Now()
	t.signal()
}

func (t *tracker) closeCreation() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.signal()
}

// state: tasks finished, whether all are, the first that failed.
func (t *tracker) state() (done int, finished bool, failed *taskFailure) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done, t.closed && t.done == len(t.ids), t.failure
}

func (t *tracker) counts() (created, done int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ids), t.done
}

func (t *tracker) lastFinish() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

func (t *tracker) committedAt(step int64) (time.Time, bool) {
	t.committedMu.Lock()
	defer t.committedMu.Unlock()
	at, ok := t.committed[step]
	return at, ok
}

func (t *tracker) allIDs() []int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]int64(nil), t.ids...)
}

func (t *tracker) randomID() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.ids) == 0 {
		return 0, false
	}
	return t.ids[t.rnd.IntN(len(t.ids))], true
}

func (t *tracker) consume(events <-chan engine.Event, node int) {
	for ev := range events {
		switch ev.Type {
		case engine.EventStepExecutionRequested:
			t.started[node].Add(1)
		case engine.EventStepCompleted:
			// Events reach subscribers once committed: this is when the
			// step's result was recorded for good.
			t.committedMu.Lock()
			t.committed[ev.StepID] = time.Now()
			t.committedMu.Unlock()
		case engine.EventTaskCompleted, engine.EventTaskFailed, engine.EventTaskCancelled, engine.EventTaskResolvedManually:
			t.finished(ev.TaskID, ev.Type)
		}
	}
}

// poll reads the state of every unfinished task of the run from the store.
func (t *tracker) poll(ctx context.Context, store backends.Store) error {
	t.mu.Lock()
	var open []int64
	for id, fin := range t.ours {
		if !fin {
			open = append(open, id)
		}
	}
	t.mu.Unlock()
	for _, id := range open {
		task, err := store.GetTask(ctx, id)
		if err != nil {
			return err
		}
		switch task.State {
		case backends.StateComplete:
			t.finished(id, engine.EventTaskCompleted)
		case backends.StateError:
			t.finished(id, engine.EventTaskFailed)
		case backends.StateCancelled:
			t.finished(id, engine.EventTaskCancelled)
		case backends.StateResolvedManually:
			t.finished(id, engine.EventTaskResolvedManually)
		}
	}
	return nil
}
