package engine_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/delivery"
	"github.com/taskerd/taskerd/internal/eventlog"
)

// benchReaders are the event log's readers a throughput benchmark runs
// beside the engine: a webhook and a live-stream client. Each notes the
// last seq it received.
type benchReaders struct {
	cancel  context.CancelFunc
	done    chan struct{}
	webhook atomic.Int64
	stream  atomic.Int64
}

func startBenchReaders(b *testing.B, eng *engine.Engine, hub *eventlog.Hub) *benchReaders {
	r := &benchReaders{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel

	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if seq, err := strconv.ParseInt(req.Header.Get("Taskerd-Event-Seq"), 10, 64); err == nil {
			r.webhook.Store(seq)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	hook, err := delivery.NewWebhook("bench", receiver.URL, []byte("bench-secret"), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	reader, err := delivery.NewReader(delivery.Options{Cursor: "webhook:bench", Owner: "bench", Store: eng.Store(),
		Hub: hub, Sink: hook, FromBeginning: true})
	if err != nil {
		b.Fatal(err)
	}

	srv, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}, Hub: hub})
	if err != nil {
		b.Fatal(err)
	}
	apiServer := httptest.NewServer(srv.Handler())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiServer.URL+"/v1/events?after=0", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET /v1/events: %s", resp.Status)
	}

	go hub.Run(ctx)
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); _ = reader.Run(ctx) }()
	go func() {
		defer close(r.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				if seq, err := strconv.ParseInt(id, 10, 64); err == nil {
					r.stream.Store(seq)
				}
			}
		}
		<-readerDone
		srv.CloseStreams()
		apiServer.Close()
		receiver.Close()
	}()
	return r
}

// waitFor waits until both readers have received the log's last event.
func (r *benchReaders) waitFor(b *testing.B, eng *engine.Engine) {
	last, err := eng.Store().LastEventSeq(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for r.webhook.Load() < last || r.stream.Load() < last {
		if time.Now().After(deadline) {
			b.Fatalf("readers behind after 2 minutes: webhook at %d, stream at %d, log at %d", r.webhook.Load(), r.stream.Load(), last)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *benchReaders) stop() {
	r.cancel()
	<-r.done
}
