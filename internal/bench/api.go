package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/eventlog"
)

// MaxInFlight bounds api-create's requests waiting for an answer; a
// request due while that many are is sent when one answers (and counted
// late).
const MaxInFlight = 256

// apiServer is the REST API of the bench's engine, on a loopback port,
// without authentication (as serve --auth none).
type apiServer struct {
	url string
	srv *http.Server
}

func startAPI(eng *engine.Engine, hub *eventlog.Hub, log *slog.Logger) (*apiServer, error) {
	server, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}, Logger: log, Hub: hub})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the API: %w", err)
	}
	srv := &http.Server{Handler: server.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &apiServer{url: "http://" + ln.Addr().String(), srv: srv}, nil
}

func (a *apiServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if a.srv.Shutdown(ctx) != nil {
		_ = a.srv.Close()
	}
}

// apiLoad sends POST /v1/tasks at r.o.Rate per second, open loop: each
// request at its scheduled time whether or not the earlier ones were
// answered (at most MaxInFlight waiting), n requests, or (n == 0) until
// until. The tasks created join the run.
func (r *runner) apiLoad(ctx context.Context, base string, n int, until time.Time) *HTTPResult {
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConns: MaxInFlight, MaxIdleConnsPerHost: MaxInFlight},
		Timeout:   30 * time.Second,
	}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(map[string]string{"workflow": r.sc.workflowName()})
	interval := time.Duration(float64(time.Second) / r.o.Rate)
	res := &HTTPResult{OfferedRate: r.o.Rate}
	var (
		mu      sync.Mutex
		latency []time.Duration
		lastAns time.Time
		wg      sync.WaitGroup
	)
	fail := func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		res.Errors++
		if res.FirstError == "" {
			res.FirstError = msg
		}
	}
	inFlight := make(chan struct{}, MaxInFlight)
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := time.Now()
send:
	for i := 0; n == 0 || i < n; i++ {
		at := start.Add(time.Duration(i) * interval)
		if n == 0 && !at.Before(until) {
			break
		}
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break send
			}
		}
		select {
		case inFlight <- struct{}{}:
		default:
			res.Late++
			select {
			case inFlight <- struct{}{}:
			case <-ctx.Done():
				break send
			}
		}
		res.Requests++
		wg.Go(func() {
			defer func() { <-inFlight }()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/tasks", bytes.NewReader(body))
			if err != nil {
				fail(err.Error())
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				fail(err.Error())
				return
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took, now := time.Since(at), time.Now()
			var task struct {
				ID int64 `json:"id"`
			}
			switch {
			case err != nil:
				fail(err.Error())
				return
			case resp.StatusCode != http.StatusCreated:
				fail(fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(raw)))
				return
			case json.Unmarshal(raw, &task) != nil || task.ID == 0:
				fail(fmt.Sprintf("201 with a body that names no task: %.200s", raw))
				return
			}
			r.track.add(task.ID)
			mu.Lock()
			defer mu.Unlock()
			res.OK++
			latency = append(latency, took)
			if now.After(lastAns) {
				lastAns = now
			}
		})
	}
	wg.Wait()
	res.Latency = percentiles(latency)
	if d := lastAns.Sub(start); res.OK > 0 && d > 0 {
		res.AchievedRate = round(float64(res.OK)/d.Seconds(), 1)
	}
	return res
}
