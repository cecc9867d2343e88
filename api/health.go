package api

import (
	"context"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
)

// readyTimeout bounds the readiness check.
const readyTimeout = 2 * time.Second

func (s *Server) live(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "live"})
	return nil
}

// Readiness checks, as /health/ready names the one that failed.
const (
	checkDatabase = "database" // the store answers (Stats)
	checkSchema   = "schema"   // its schema is this binary's
	checkWrite    = "write"    // it can write
	checkCustom   = "ready"    // Config.Ready
)

// checkReady runs the readiness checks, in order, with their deadline, and
// returns the name of the first that failed and why.
func (s *Server) checkReady(ctx context.Context) (check string, err error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if s.ready != nil {
		return checkCustom, s.ready(ctx)
	}
	now := s.now()
	if _, err := s.store.Stats(ctx, now); err != nil {
		return checkDatabase, err
	}
	if sc, ok := s.store.(SchemaChecker); ok {
		if err := sc.CheckSchema(ctx); err != nil {
			return checkSchema, err
		}
	}
	if wc, ok := s.store.(WriteChecker); ok {
		if err := wc.WriteHealth(ctx, now); err != nil {
			return checkWrite, err
		}
	}
	return "", nil
}

// SchemaChecker is a store that can tell whether its schema is this
// binary's (both backends are): readiness checks it.
type SchemaChecker interface {
	CheckSchema(ctx context.Context) error
}

// WriteChecker is a store that can tell whether it can write (both
// backends are): readiness checks it, since a database that still answers
// reads may refuse every write. SQLite reports a write that failed, in the
// last 30 s before now, because it could not write (disk full, I/O error,
// read-only file, locked past its busy timeout); PostgreSQL makes a round
// trip and asks whether the server is read-only.
type WriteChecker interface {
	WriteHealth(ctx context.Context, now time.Time) error
}

func (s *Server) readyRoute(w http.ResponseWriter, r *http.Request) error {
	if check, err := s.checkReady(r.Context()); err != nil {
		s.log.Warn("not ready", "request_id", RequestID(r.Context()), "check", check, "err", err)
		// The route is public: a driver's connection error names the
		// database's address, user and name, so it stays in the log.
		detail := err.Error()
		if check == checkDatabase {
			detail = "the database did not answer (the server log says why)"
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"status": "unavailable", "check": check, "failed_check": check + ": " + detail,
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
	RetryableErrors int `json:"retryable_errors"`
	InBackoff       int `json:"in_backoff"`
	Exhausted       int `json:"exhausted"`
	// UnavailableWorkflows are the loaded workflows this node cannot run
	// (a handler not registered): reported, not counted against the
	// node's health, which stays healthy.
	UnavailableWorkflows []unavailableView `json:"unavailable_workflows"`
	Node                 nodeView          `json:"node"`
}

type unavailableView struct {
	Workflow        string   `json:"workflow"` // namespace/name@version
	MissingHandlers []string `json:"missing_handlers"`
	Reason          string   `json:"reason"`
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
	}, UnavailableWorkflows: []unavailableView{}}
	for _, wf := range s.eng.Catalog().All() {
		if missing := s.eng.MissingHandlers(wf); len(missing) > 0 {
			v.UnavailableWorkflows = append(v.UnavailableWorkflows, unavailableView{
				Workflow: wf.ID(), MissingHandlers: missing, Reason: engine.UnavailableReason(missing)})
		}
	}
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
