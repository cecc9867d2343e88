package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// BenchmarkCreateTask posts b.N task creations of a 10-step workflow from
// 50 concurrent clients over real HTTP (keep-alive), with the engine's
// workers idle, and reports the p50 and p99 latency and requests/s.
// "saturated": each client sends its next request as soon as the last is
// answered (the server's capacity). "500rps": each client sends one request
// every 100 ms (50 clients, 500 requests/s offered), a latency figure at a
// load below capacity.
//
//	go test ./api -run '^$' -bench CreateTask -benchtime 5000x
func BenchmarkCreateTask(b *testing.B) {
	for _, sc := range storetest.Backends() {
		for _, mode := range []struct {
			name     string
			interval time.Duration // per client; 0: closed loop
		}{{"saturated", 0}, {"500rps", 100 * time.Millisecond}} {
			b.Run(sc.Name+"/"+mode.name, func(b *testing.B) { benchCreate(b, sc.Open, mode.interval) })
		}
	}
}

func benchCreate(b *testing.B, open func(testing.TB) backends.Store, interval time.Duration) {
	store := open(b)
	var src strings.Builder
	src.WriteString("workflow \"ten\" {\n")
	for i := range 10 {
		fmt.Fprintf(&src, "  step \"s%d\" {\n    handler = \"builtin.noop\"\n", i)
		if i > 0 {
			fmt.Fprintf(&src, "    depends_on = [step.s%d]\n", i-1)
		}
		src.WriteString("  }\n")
	}
	src.WriteString("}\n")
	ws, diags := definition.NewParser().ParseSource("ten.hcl", []byte(src.String()))
	require.False(b, diags.HasErrors())
	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(ws), Registry: builtin.NewRegistry()})
	require.NoError(b, err)
	srv, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}})
	require.NoError(b, err)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	body := []byte(`{"workflow": "default/ten", "context": {"order_id": "A-1"}}`)
	load(b, http.MethodPost, hs.URL+"/v1/tasks", body, http.StatusCreated, interval)
}

// BenchmarkLiveness is the same 50 closed-loop clients against GET
// /health/live, which touches no database: the floor that HTTP itself (the
// clients and the server on the same two cores) puts under any request's
// latency at this concurrency.
//
//	go test ./api -run '^$' -bench Liveness -benchtime 20000x
func BenchmarkLiveness(b *testing.B) {
	eng, err := engine.New(engine.Config{Store: storetest.SQLite(b), Catalog: definition.NewCatalog(nil), Registry: builtin.NewRegistry()})
	require.NoError(b, err)
	srv, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}})
	require.NoError(b, err)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	load(b, http.MethodGet, hs.URL+"/health/live", nil, http.StatusOK, 0)
}

// load sends b.N requests from 50 concurrent keep-alive clients, each
// sending its next request when the last is answered (interval 0) or once
// per interval, and reports p50, p99 and requests/s.
func load(b *testing.B, method, url string, body []byte, want int, interval time.Duration) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	const clients = 50
	var (
		next  atomic.Int64
		mu    sync.Mutex
		took  []time.Duration
		wg    sync.WaitGroup
		start = time.Now()
	)
	b.ResetTimer()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			// Paced clients start staggered over one interval.
			slot := start.Add(time.Duration(c) * interval / clients)
			for next.Add(1) <= int64(b.N) {
				if interval > 0 {
					time.Sleep(time.Until(slot))
					slot = slot.Add(interval)
				}
				t0 := time.Now()
				req, err := http.NewRequest(method, url, bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				if body != nil {
					req.Header.Set("Content-Type", "application/json")
				}
				res, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != want {
					b.Errorf("status %d", res.StatusCode)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			took = append(took, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(took))/elapsed.Seconds(), "req/s")
	b.ReportMetric(0, "ns/op")
}
