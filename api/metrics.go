package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	reg.MustRegister(m.tasksCreated, m.tasksFinished, m.steps, m.stepDuration,
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
