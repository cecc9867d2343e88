package api

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// readyTimeout bounds the readiness check.
const readyTimeout = 2 * time.Second

func (s *Server) live(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "live"})
	return nil
}

// checkReady runs the readiness check with its deadline.
func (s *Server) checkReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if s.ready != nil {
		return s.ready(ctx)
	}
	if _, err := s.store.Stats(ctx, s.now()); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if sc, ok := s.store.(SchemaChecker); ok {
		if err := sc.CheckSchema(ctx); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	return nil
}

// SchemaChecker is a store that can tell whether its schema is this
// binary's (both backends are): readiness checks it.
type SchemaChecker interface {
	CheckSchema(ctx context.Context) error
}

func (s *Server) readyRoute(w http.ResponseWriter, r *http.Request) error {
	if err := s.checkReady(r.Context()); err != nil {
		s.log.Warn("not ready", "request_id", RequestID(r.Context()), "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"status": "unavailable", "failed_check": err.Error(),
		})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

type statusView struct {
	// Status is healthy when the database answers; unhealthy (503) when it
	// does not. Blocked tasks are reported, not counted against the node:
	// they need an operator, not a restart.
	Status string                 `json:"status"`
	Error  string                 `json:"error,omitempty"`
	Tasks  map[backends.State]int `json:"tasks,omitempty"`
	Steps  map[backends.State]int `json:"steps,omitempty"`
	// Of the steps in error (SEMANTICS §3): retryable ones (of which some
	// wait for their backoff) run again by themselves; exhausted ones block
	// their tasks until an operator retries or resolves them.
	RetryableErrors int      `json:"retryable_errors"`
	InBackoff       int      `json:"in_backoff"`
	Exhausted       int      `json:"exhausted"`
	Node            nodeView `json:"node"`
}

type nodeView struct {
	ID            string    `json:"id"`
	Hostname      string    `json:"hostname"`
	PID           int       `json:"pid"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	GoVersion     string    `json:"go_version"`
	Goroutines    int       `json:"goroutines"`
	Workflows     int       `json:"workflows"`
}

func (s *Server) statusRoute(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "health:status", Resource{Type: "health"}); err != nil {
		return err
	}
	host, _ := os.Hostname()
	now := s.now()
	v := statusView{Status: "healthy", Node: nodeView{
		ID: s.eng.NodeID(), Hostname: host, PID: os.Getpid(), StartedAt: s.started,
		UptimeSeconds: now.Sub(s.started).Seconds(), GoVersion: runtime.Version(),
		Goroutines: runtime.NumGoroutine(), Workflows: len(s.eng.Catalog().All()),
	}}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	st, err := s.store.Stats(ctx, now)
	if err != nil {
		s.log.Warn("health status: database check failed", "request_id", RequestID(r.Context()), "err", err)
		v.Status, v.Error = "unhealthy", "database: "+err.Error()
		writeJSON(w, http.StatusServiceUnavailable, v)
		return nil
	}
	v.Tasks, v.Steps = st.Tasks, st.Steps
	v.RetryableErrors, v.InBackoff, v.Exhausted = st.RetryableErrors, st.InBackoff, st.Exhausted
	writeJSON(w, http.StatusOK, v)
	return nil
}
