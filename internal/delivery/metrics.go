package delivery

import "github.com/prometheus/client_golang/prometheus"

// Metrics count a node's deliveries, by sink (the cursor's name:
// "webhook:NAME", "nats"). A nil *Metrics counts nothing.
type Metrics struct {
	deliveries *prometheus.CounterVec
	dead       *prometheus.CounterVec
	lagEvents  *prometheus.GaugeVec
	collectors []prometheus.Collector
}

// NewMetrics makes the collectors; register Collectors() in the node's
// registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskerd_event_deliveries_total",
			Help: "Attempts to deliver an event to a sink (webhook:NAME, nats), by result (ok, failed).",
		}, []string{"sink", "result"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskerd_event_dead_letters_total",
			Help: "Events a sink gave up on after its attempts (taskerd webhooks dead NAME lists them).",
		}, []string{"sink"}),
		lagEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "taskerd_event_sink_lag",
			Help: "Events written that a sink has not handled yet, as the node holding its lease last saw it.",
		}, []string{"sink"}),
	}
	m.collectors = []prometheus.Collector{m.deliveries, m.dead, m.lagEvents}
	return m
}

// Collectors are the metrics' collectors.
func (m *Metrics) Collectors() []prometheus.Collector { return m.collectors }

func (m *Metrics) delivered(sink string) {
	if m != nil {
		m.deliveries.WithLabelValues(sink, "ok").Inc()
	}
}

func (m *Metrics) failed(sink string) {
	if m != nil {
		m.deliveries.WithLabelValues(sink, "failed").Inc()
	}
}

func (m *Metrics) deadLetter(sink string) {
	if m != nil {
		m.dead.WithLabelValues(sink).Inc()
	}
}

func (m *Metrics) lag(sink string, n int64) {
	if m != nil {
		m.lagEvents.WithLabelValues(sink).Set(float64(max(n, 0)))
	}
}
