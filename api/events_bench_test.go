package api_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/internal/eventlog"
)

// BenchmarkEventDelivery measures the event stream's latency: from the
// commit of a write to the moment an SSE client over real HTTP has read
// the event. Each of b.N writes creates a task (one event,
// task.initialize_requested) through the store, with the sink a node
// gives its writes: it stamps the commit time and publishes the events to
// the hub (which keeps them for the streams to read), as the engine does.
// The next write waits until every client has read the last
// one (a closed loop: the figure is delivery, not queueing). "1stream"
// has one client, "16streams" sixteen, each reading every event; p50-ms
// and p99-ms are over every (event, client) pair.
//
//	go test ./api -run '^$' -bench EventDelivery -benchtime 2000x
func BenchmarkEventDelivery(b *testing.B) {
	for _, sc := range storetest.Backends() {
		for _, c := range []struct {
			name    string
			streams int
		}{{"1stream", 1}, {"16streams", 16}} {
			b.Run(sc.Name+"/"+c.name, func(b *testing.B) { benchDelivery(b, sc.Open(b), c.streams) })
		}
	}
}

func benchDelivery(b *testing.B, store backends.Store, streams int) {
	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(nil), Registry: builtin.NewRegistry()})
	require.NoError(b, err)
	hub := eventlog.NewHub(store, 0) // not Run: this node's writes notify it
	// No heartbeat: a stream reads the log only when the hub wakes it.
	srv, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}, Hub: hub, StreamHeartbeat: time.Hour})
	require.NoError(b, err)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	defer srv.CloseStreams()

	// Each client reports the seq of every event it reads, with the time.
	type seen struct {
		seq int64
		at  time.Time
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reads := make(chan seen, 1024)
	var wg sync.WaitGroup
	for range streams {
		req, err := http.NewRequestWithContext(ctx, "GET", hs.URL+"/v1/events", nil)
		require.NoError(b, err)
		res, err := hs.Client().Do(req)
		require.NoError(b, err)
		require.Equal(b, http.StatusOK, res.StatusCode)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer res.Body.Close()
			rd := bufio.NewReader(res.Body)
			for {
				line, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				if id, ok := strings.CutPrefix(line, "id: "); ok {
					at := time.Now()
					seq, _ := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
					select {
					case reads <- seen{seq, at}:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	require.Eventually(b, func() bool { return srv.OpenStreams() == streams }, 10*time.Second, time.Millisecond)

	var (
		mu        sync.Mutex
		committed = map[int64]time.Time{}
	)
	sink := backends.WithEventSink(context.Background(), func(events []*backends.Event) {
		at := time.Now()
		mu.Lock()
		for _, ev := range events {
			committed[ev.Seq] = at
		}
		mu.Unlock()
		hub.Publish(events)
	})
	steps := []backends.NewStep{{Name: "a", Handler: "builtin.noop", RetryLimit: 1}}
	latencies := make([]time.Duration, 0, b.N*streams)
	b.ResetTimer()
	for i := range b.N {
		_, _, err := store.CreateTask(sink, &backends.CreateTaskParams{Namespace: "bench", WorkflowName: "w", WorkflowVersion: "1.0.0",
			Steps: steps, Now: time.Now().UTC(), Reason: strconv.Itoa(i)})
		require.NoError(b, err)
		for range streams {
			var r seen
			select {
			case r = <-reads:
			case <-time.After(10 * time.Second):
				b.Fatalf("event %d: not delivered within 10 s", i)
			}
			mu.Lock()
			at, ok := committed[r.seq]
			mu.Unlock()
			require.True(b, ok, "seq %d read before its sink ran", r.seq)
			latencies = append(latencies, r.at.Sub(at))
		}
	}
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
