// Package otlptest is an OTLP/HTTP collector for tests: it keeps the spans
// exported to it (by taskerd, or by a plugin process, whose in-memory
// exporter a test could not see).
package otlptest

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Collector receives OTLP/HTTP (protobuf) exports at URL + "/v1/traces".
type Collector struct {
	URL string

	mu    sync.Mutex
	spans []Span
}

// Span is one span received, with its resource's service.name.
type Span struct {
	*tracepb.Span
	Service string
}

// TraceID, SpanID and ParentSpanID are the span's ids in hex ("" for
// none).
func (s Span) TraceID() string      { return hex.EncodeToString(s.GetTraceId()) }
func (s Span) SpanID() string       { return hex.EncodeToString(s.GetSpanId()) }
func (s Span) ParentSpanID() string { return hex.EncodeToString(s.GetParentSpanId()) }

// Start starts a collector, stopped when the test ends.
func Start(t testing.TB) *Collector {
	c := &Collector{}
	srv := httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

func (c *Collector) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req collectortrace.ExportTraceServiceRequest
	if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, Span{Span: s, Service: service})
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Spans are the spans received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Named is the first span received named name.
func (c *Collector) Named(name string) (Span, bool) {
	for _, s := range c.Spans() {
		if s.GetName() == name {
			return s, true
		}
	}
	return Span{}, false
}

// Attr is the string form of a span attribute ("" without it).
func (s Span) Attr(key string) string {
	for _, a := range s.GetAttributes() {
		if a.GetKey() != key {
			continue
		}
		switch v := a.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue
		case *commonpb.AnyValue_IntValue:
			return strconv.FormatInt(v.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			return strconv.FormatBool(v.BoolValue)
		}
		return a.GetValue().String()
	}
	return ""
}
