package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
)

// Metrics is a node's Prometheus registry: its own (not the global one, so
// that tests and several servers in one process do not collide).
type Metrics struct {
	Registry *prometheus.Registry

	tasksCreated  *prometheus.CounterVec
	tasksFinished *prometheus.CounterVec
	steps         *prometheus.CounterVec
	stepDuration  *prometheus.HistogramVec
	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	pluginCalls   *prometheus.HistogramVec
	readyToRun    prometheus.Histogram
	eventStreams  prometheus.Gauge
}

// NewMetrics registers taskerd's collectors and the Go runtime's.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		tasksCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskerd_tasks_created_total", Help: "Tasks created, by workflow (namespace/name).",
		}, []string{"workflow"}),
		tasksFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskerd_tasks_finished_total", Help: "Tasks that reached complete, error (failed) or cancelled, by workflow.",
		}, []string{"workflow", "outcome"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskerd_steps_total", Help: "Step attempts that ended, by handler and outcome (completed, failed, lease_expired, cancelled).",
		}, []string{"handler", "outcome"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "taskerd_step_duration_seconds", Help: "Claim to result of completed steps, by handler.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"handler"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskerd_http_requests_total", Help: "API requests, by route and status code.",
		}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "taskerd_http_request_duration_seconds", Help: "API request latency, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route"}),
	}
	m.pluginCalls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "taskerd_plugin_call_duration_seconds", Help: "Calls into step-handler plugins, by PLUGIN.HANDLER and outcome.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"handler", "outcome"})
	m.readyToRun = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "taskerd_step_ready_to_running_seconds", Help: "From a step becoming ready (created, parents done, backoff over) to its claim by this node.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	})
	m.eventStreams = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "taskerd_event_streams", Help: "Event streams (GET /v1/events) open on this node.",
	})
	reg.MustRegister(m.eventStreams, m.pluginCalls, m.readyToRun, m.tasksCreated, m.tasksFinished, m.steps, m.stepDuration,
		m.httpRequests, m.httpDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds more collectors (the engine's gauges, plugin call latency).
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.Registry.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) observeHTTP(route string, code int, took time.Duration) {
	m.httpRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(took.Seconds())
}

// Observe counts one engine event. Tasks created over the API are counted
// by the API itself (task.initialize_requested is counted for the rest).
func (m *Metrics) Observe(ev engine.Event) {
	switch ev.Type {
	case engine.EventStepExecutionRequested:
		if ev.ReadyAt != nil {
			m.readyToRun.Observe(max(ev.Time.Sub(*ev.ReadyAt), 0).Seconds())
		}
	case engine.EventTaskCompleted:
		m.tasksFinished.WithLabelValues(ev.Workflow, "completed").Inc()
	case engine.EventTaskFailed:
		m.tasksFinished.WithLabelValues(ev.Workflow, "failed").Inc()
	case engine.EventTaskCancelled:
		m.tasksFinished.WithLabelValues(ev.Workflow, "cancelled").Inc()
	case engine.EventStepCompleted:
		m.steps.WithLabelValues(ev.Handler, "completed").Inc()
		m.stepDuration.WithLabelValues(ev.Handler).Observe(float64(ev.DurationMs) / 1000)
	case engine.EventStepFailed:
		m.steps.WithLabelValues(ev.Handler, "failed").Inc()
	case engine.EventStepLeaseExpired:
		m.steps.WithLabelValues(ev.Handler, "lease_expired").Inc()
	case engine.EventStepCancelled:
		m.steps.WithLabelValues(ev.Handler, "cancelled").Inc()
	}
}

// Consume observes events until the channel closes.
func (m *Metrics) Consume(events <-chan engine.Event) {
	for ev := range events {
		m.Observe(ev)
	}
}

func (s *Server) metricsRoute(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "metrics:index", Resource{Type: "metrics"}); err != nil {
		return err
	}
	promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	return nil
}

// StoreCollector reports the database's counts on every scrape (one Stats
// call, 2 s at most): tasks and steps by state, ready steps, and steps in
// error by whether they will run again. A scrape whose query fails reports
// taskerd_store_up 0 and no counts.
type StoreCollector struct {
	store backends.Store
	now   func() time.Time

	up, tasks, steps, ready, retryable, backoff, exhausted *prometheus.Desc
}

// NewStoreCollector returns the collector of store's counts.
func NewStoreCollector(store backends.Store) *StoreCollector {
	return &StoreCollector{
		store:     store,
		now:       func() time.Time { return time.Now().UTC() },
		up:        prometheus.NewDesc("taskerd_store_up", "1 when the database answered the scrape's count query.", nil, nil),
		tasks:     prometheus.NewDesc("taskerd_tasks", "Tasks by state.", []string{"state"}, nil),
		steps:     prometheus.NewDesc("taskerd_steps", "Steps by state.", []string{"state"}, nil),
		ready:     prometheus.NewDesc("taskerd_ready_steps", "Steps ready for execution now (what claims would find).", nil, nil),
		retryable: prometheus.NewDesc("taskerd_steps_retryable_errors", "Steps in error that will run again by themselves.", nil, nil),
		backoff:   prometheus.NewDesc("taskerd_steps_in_backoff", "Retryable steps in error still waiting for their backoff.", nil, nil),
		exhausted: prometheus.NewDesc("taskerd_steps_exhausted", "Steps in error that will not run again (they block their tasks).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *StoreCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.tasks, c.steps, c.ready, c.retryable, c.backoff, c.exhausted} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *StoreCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	st, err := c.store.Stats(ctx, c.now())
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, s := range backends.AllStates {
		ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(st.Tasks[s]), string(s))
		ch <- prometheus.MustNewConstMetric(c.steps, prometheus.GaugeValue, float64(st.Steps[s]), string(s))
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(st.ReadySteps))
	ch <- prometheus.MustNewConstMetric(c.retryable, prometheus.GaugeValue, float64(st.RetryableErrors))
	ch <- prometheus.MustNewConstMetric(c.backoff, prometheus.GaugeValue, float64(st.InBackoff))
	ch <- prometheus.MustNewConstMetric(c.exhausted, prometheus.GaugeValue, float64(st.Exhausted))
}

// InstrumentPlugins wraps every handler of r that is not built in
// (PLUGIN.HANDLER) so that each call is timed in
// taskerd_plugin_call_duration_seconds{handler, outcome}, outcome ok or
// error.
func (m *Metrics) InstrumentPlugins(r *engine.Registry) error {
	for _, name := range r.Names() {
		if strings.HasPrefix(name, definition.BuiltinPlugin+".") {
			continue
		}
		h, _ := r.Lookup(name)
		r.Unregister(name)
		if err := r.Register(name, timedHandler{h: h, name: name, hist: m.pluginCalls}); err != nil {
			return err
		}
	}
	return nil
}

type timedHandler struct {
	h    engine.Handler
	name string
	hist *prometheus.HistogramVec
}

func (t timedHandler) Execute(ctx context.Context, req *engine.StepRequest) (json.RawMessage, error) {
	start := time.Now()
	res, err := t.h.Execute(ctx, req)
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	t.hist.WithLabelValues(t.name, outcome).Observe(time.Since(start).Seconds())
	return res, err
}

// Unwrap is the handler timed, so that the engine finds its optional
// interfaces (engine.RetryHook) through the timing.
func (t timedHandler) Unwrap() engine.Handler { return t.h }
