package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// Result is what a run measured. Durations are in milliseconds.
type Result struct {
	Scenario string `json:"scenario"`
	// Database is "sqlite" or "postgres"; Synchronous SQLite's setting;
	// Where the database in a few words.
	Database    string `json:"database"`
	Synchronous string `json:"synchronous,omitempty"`
	Where       string `json:"where"`
	// Created says when the tasks were created: "before" the engine
	// started, "live" by 4 clients while it ran, "serial" (one at a time,
	// each once the previous one finished), or over the "api".
	Created string `json:"created"`
	Workers int    `json:"workers"`
	// Nodes is how many engines ran it, each with Workers workers.
	Nodes int `json:"nodes"`
	// NodeStarts counts, per node, the handlers it started (each
	// attempt's step.execution_requested it published), with more than
	// one node; nil with one.
	NodeStarts []int64 `json:"node_starts,omitempty"`
	Cores      int     `json:"cores"`
	// Tasks ran to completion, of StepsPerTask steps each: Steps.
	Tasks        int `json:"tasks"`
	StepsPerTask int `json:"steps_per_task"`
	Steps        int `json:"steps"`
	// Elapsed is from the engine's start to the last task's completion.
	ElapsedS  float64 `json:"elapsed_s"`
	StepsPerS float64 `json:"steps_per_s"`
	TasksPerS float64 `json:"tasks_per_s"`

	// AnalyzedTasks are the tasks read back from the store for what
	// follows: every task, or an evenly spread sample of maxAnalyzed.
	AnalyzedTasks int `json:"analyzed_tasks"`
	// CompleteSteps counts the steps of the analyzed tasks found complete
	// (AnalyzedTasks × StepsPerTask when all is well); Attempts their
	// handler calls.
	CompleteSteps int `json:"complete_steps"`
	Attempts      int `json:"attempts"`

	// ReadyToRunning: from a step becoming ready (its task created, or
	// the engine started for tasks created before it; its last parent's
	// result recorded; a retry's backoff over) to its handler starting.
	ReadyToRunning *Percentiles `json:"ready_to_running_ms"`
	// StepOverhead: from the step becoming ready (for its last attempt)
	// to its result recorded (the step's processed_at, the moment the
	// engine had the handler's outcome, before the write), minus its
	// handler's time.
	StepOverhead *Percentiles `json:"step_overhead_ms"`
	// StepOverheadCommitted is StepOverhead up to the result's commit
	// instead (when its step.completed event reached the bench): the
	// write's own time included.
	StepOverheadCommitted *Percentiles `json:"step_overhead_committed_ms"`
	// ExecContext: the execution-context query (TaskExecutionContext) of
	// random tasks of the run, timed while it ran; nil when none was.
	ExecContext *Percentiles `json:"exec_context_query_ms"`
	// FanoutSpread (fanout-50): per task, from the root's result recorded
	// to the last of the 48 branches' handlers starting.
	FanoutSpread *Percentiles `json:"fanout_spread_ms,omitempty"`
	// HTTP (api-create): the requests' side.
	HTTP *HTTPResult `json:"http,omitempty"`
	// PeakRSSMiB is this process's peak resident memory (VmHWM); nil
	// where /proc/self/status does not say.
	PeakRSSMiB *float64 `json:"peak_rss_mib"`
}

// Percentiles of a set of durations, in milliseconds (nearest rank).
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// HTTPResult is api-create's client side.
type HTTPResult struct {
	// OfferedRate is --rate; AchievedRate the tasks created (201) per
	// second, from the first request's time to the last answer.
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	Requests     int     `json:"requests"`
	OK           int     `json:"ok"`
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	// Late counts requests sent after their time because MaxInFlight
	// requests were waiting for answers.
	Late int `json:"late"`
	// Latency is from each request's scheduled time (not the time it was
	// sent, so a late request counts its wait) to its answer.
	Latency *Percentiles `json:"latency_ms"`
}

func percentiles(d []time.Duration) *Percentiles {
	n := len(d)
	if n == 0 {
		return nil
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := min(max(int(math.Ceil(q*float64(n)))-1, 0), n-1)
		return ms(d[i])
	}
	return &Percentiles{N: n, P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ms(d[n-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func round(f float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(f*p) / p
}

// taskSample is what one task read back contributes.
type taskSample struct {
	ready, overhead, committed []time.Duration
	spread                     *time.Duration
	complete                   int
	attempts                   int
}

// analyze reads the run's tasks back and computes the result.
func (r *runner) analyze(ctx context.Context, end time.Time, httpRes *HTTPResult) (*Result, error) {
	ids := r.track.allIDs()
	elapsed := end.Sub(r.start)
	res := &Result{
		Scenario: r.sc.name, Database: r.o.DB.Kind, Synchronous: r.o.DB.Synchronous, Where: r.o.DB.Where,
		Created: r.sc.created, Workers: r.o.Workers, Nodes: r.o.Nodes, Cores: runtime.NumCPU(),
		Tasks: len(ids), StepsPerTask: len(r.sc.steps), Steps: len(ids) * len(r.sc.steps),
		ElapsedS: round(elapsed.Seconds(), 3), HTTP: httpRes, PeakRSSMiB: peakRSS(),
	}
	if r.o.Nodes > 1 {
		for i := range r.o.Nodes {
			res.NodeStarts = append(res.NodeStarts, r.track.started[i].Load())
		}
	}
	if elapsed > 0 {
		res.StepsPerS = round(float64(res.Steps)/elapsed.Seconds(), 1)
		res.TasksPerS = round(float64(res.Tasks)/elapsed.Seconds(), 1)
	}
	pick := ids
	if len(ids) > maxAnalyzed {
		pick = make([]int64, maxAnalyzed)
		for i := range pick {
			pick[i] = ids[i*len(ids)/maxAnalyzed]
		}
	}
	samples := make([]taskSample, len(pick))
	errs := make([]error, len(pick))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range next {
				samples[i], errs[i] = r.analyzeTask(ctx, pick[i])
			}
		})
	}
	for i := range pick {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var ready, overhead, committed, spread []time.Duration
	for _, s := range samples {
		ready = append(ready, s.ready...)
		overhead = append(overhead, s.overhead...)
		committed = append(committed, s.committed...)
		if s.spread != nil {
			spread = append(spread, *s.spread)
		}
		res.CompleteSteps += s.complete
		res.Attempts += s.attempts
	}
	res.AnalyzedTasks = len(pick)
	res.ReadyToRunning = percentiles(ready)
	res.StepOverhead = percentiles(overhead)
	res.StepOverheadCommitted = percentiles(committed)
	res.FanoutSpread = percentiles(spread)
	r.ctxMu.Lock()
	res.ExecContext = percentiles(r.ctxSamples)
	r.ctxMu.Unlock()
	return res, nil
}

func (r *runner) analyzeTask(ctx context.Context, id int64) (taskSample, error) {
	var ts taskSample
	task, err := r.store.GetTask(ctx, id)
	if err != nil {
		return ts, fmt.Errorf("reading task %d: %w", id, err)
	}
	steps, err := r.store.ListSteps(ctx, id)
	if err != nil {
		return ts, fmt.Errorf("reading the steps of task %d: %w", id, err)
	}
	byName := make(map[string]*backends.Step, len(steps))
	for _, s := range steps {
		byName[s.Name] = s
	}
	var lastBranch time.Time
	for _, def := range r.sc.steps {
		s := byName[def.name]
		if s == nil {
			return ts, fmt.Errorf("task %d has no step %s", id, def.name)
		}
		if s.State == backends.StateComplete {
			ts.complete++
		}
		ts.attempts += s.Attempts
		// When the step became ready for its first attempt.
		ready := task.CreatedAt
		if r.sc.created == createdBefore && ready.Before(r.start) {
			ready = r.start // nothing ran before the engine started
		}
		if len(def.parents) > 0 {
			ready = time.Time{}
			for _, p := range def.parents {
				if pa := byName[p].ProcessedAt; pa != nil && pa.After(ready) {
					ready = *pa
				}
			}
		}
		first, ok := r.calls.get(s.ID, 1)
		if !ok {
			continue // not run (a bug the complete count shows)
		}
		ts.ready = append(ts.ready, first.start.Sub(ready))
		last := first
		if s.Attempts > 1 {
			// A retry is ready when its backoff after the last failure
			// is over.
			if last, ok = r.calls.get(s.ID, s.Attempts); !ok || s.LastFailureAt == nil {
				continue
			}
			ready = s.LastFailureAt.Add(backends.Backoff(s.BackoffBase, s.BackoffMax, s.Attempts-1))
			ts.ready = append(ts.ready, last.start.Sub(ready))
		}
		if s.ProcessedAt != nil {
			ts.overhead = append(ts.overhead, s.ProcessedAt.Sub(ready)-last.took)
		}
		if at, ok := r.track.committedAt(s.ID); ok {
			ts.committed = append(ts.committed, at.Sub(ready)-last.took)
		}
		if len(def.parents) == 1 && def.parents[0] == "root" && last.start.After(lastBranch) {
			lastBranch = last.start
		}
	}
	if root := byName["root"]; root != nil && root.ProcessedAt != nil && !lastBranch.IsZero() {
		d := lastBranch.Sub(*root.ProcessedAt)
		ts.spread = &d
	}
	return ts, nil
}

// peakRSS is VmHWM from /proc/self/status, in MiB; nil where there is
// none.
func peakRSS() *float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				return nil
			}
			mib := round(kb/1024, 1)
			return &mib
		}
	}
	return nil
}
