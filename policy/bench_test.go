package policy

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/taskerd/taskerd/api"
)

// BenchmarkDecisionDefaultPolicy is one decision of the default policy as
// the API makes it: an operator reading a task in one of its namespaces,
// input built from the request, decision log on (to io.Discard). Each
// decision is timed on its own; it reports the median and 99th percentile of
// wall time, and on Linux the median CPU time of the benchmark's thread,
// which a busy machine inflates much less (time spent waiting for a core is
// not counted; garbage collection done by other threads is not either).
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
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	wall := make([]time.Duration, 0, b.N)
	cpu := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c0, cpuOK := threadCPUTime()
		start := time.Now()
		d, err := e.Authorize(ctx, req)
		wall = append(wall, time.Since(start))
		if c1, ok := threadCPUTime(); cpuOK && ok {
			cpu = append(cpu, c1-c0)
		}
		if err != nil || !d.Allow {
			b.Fatalf("denied: %v %v", d, err)
		}
	}
	b.StopTimer()
	slices.Sort(wall)
	b.ReportMetric(float64(wall[len(wall)/2].Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(wall[len(wall)*99/100].Nanoseconds())/1000, "p99-µs")
	if len(cpu) == len(wall) {
		slices.Sort(cpu)
		b.ReportMetric(float64(cpu[len(cpu)/2].Nanoseconds())/1000, "p50-cpu-µs")
	}
}
