package policy

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/taskerd/taskerd/api"
)

// BenchmarkDecisionDefaultPolicy is one decision of the default policy as
// the API makes it: an operator reading a task in one of its namespaces,
// input built from the request, decision log on (to io.Discard). It reports
// the median and 99th percentile of single decisions, timed one by one.
//
//	go test -run '^$' -bench DecisionDefaultPolicy -benchtime 20000x ./policy/
func BenchmarkDecisionDefaultPolicy(b *testing.B) {
	e, err := Default(WithDecisionLog(io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/v1/tasks/42", nil)
	req := &api.AuthzRequest{
		Subject:  &api.Subject{ID: "oscar", Roles: []string{"operator"}, Claims: json.RawMessage(`{"namespaces":["billing","ecommerce"]}`)},
		Action:   "task:show",
		Resource: api.Resource{Type: "task", Namespace: "ecommerce", Workflow: "ecommerce/order_fulfillment", Version: "1.0.0", TaskID: 42},
		Request:  r,
	}
	ctx := context.Background()
	took := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		d, err := e.Authorize(ctx, req)
		took = append(took, time.Since(start))
		if err != nil || !d.Allow {
			b.Fatalf("denied: %v %v", d, err)
		}
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds())/1000, "p99-µs")
}
