package api

import (
	"net/http"
	"slices"
	"strings"
)

func (s *Server) registerRoutes() {
	const public, private = true, false
	s.handle("GET", "/health/live", public, s.live)
	s.handle("GET", "/health/ready", public, s.readyRoute)
	s.handle("GET", "/health/status", private, s.statusRoute)
	s.handle("GET", "/metrics", private, s.metricsRoute)
	s.handle("GET", "/v1/openapi.json", public, s.openapiRoute)

	s.handle("POST", "/v1/tasks", private, s.createTask)
	s.handle("GET", "/v1/tasks", private, s.listTasks)
	s.handle("GET", "/v1/tasks/{id}", private, s.showTask)
	s.handle("PATCH", "/v1/tasks/{id}", private, s.patchTask)
	for _, verb := range []string{"cancel", "retry", "resolve"} {
		s.handle("POST", "/v1/tasks/{id}/"+verb, private, s.taskAction(verb))
	}
	s.handle("GET", "/v1/tasks/{id}/transitions", private, s.listTransitions)
	s.handle("GET", "/v1/tasks/{id}/graph", private, s.taskGraphRoute)
	s.handle("GET", "/v1/tasks/{id}/events", private, s.listTaskEvents)
	s.handle("GET", "/v1/tasks/{id}/steps", private, s.listSteps)
	s.handle("GET", "/v1/tasks/{id}/steps/{name}", private, s.showStep)
	for _, verb := range []string{"cancel", "retry", "resolve"} {
		s.handle("POST", "/v1/tasks/{id}/steps/{name}/"+verb, private, s.stepAction(verb))
	}

	s.handleStream("GET", "/v1/events", s.streamEvents)

	s.handle("GET", "/v1/nodes", private, s.listNodes)

	s.handle("GET", "/v1/workflows", private, s.listWorkflows)
	s.handle("GET", "/v1/workflows/{namespace}/{name}", private, s.showWorkflow)
	s.handle("GET", "/v1/workflows/{namespace}/{name}/graph", private, s.workflowGraph)

	s.handle("GET", "/v1/schedules", private, s.listSchedules)
	s.handle("GET", "/v1/schedules/{name}", private, s.showSchedule)
	s.handle("POST", "/v1/schedules/{name}/pause", private, s.pauseSchedule(true))
	s.handle("POST", "/v1/schedules/{name}/resume", private, s.pauseSchedule(false))
	s.handle("POST", "/v1/schedules/{name}/trigger", private, s.triggerSchedule)

	// Anything else: a JSON 404, or 405 when the path exists with another
	// method (net/http would answer both in plain text).
	s.mux.Handle("/", http.HandlerFunc(s.notFound))
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{"GET", "POST", "PATCH", "PUT", "DELETE"} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		slices.Sort(allowed)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
		return
	}
	writeError(w, notFound("no route %s %s", r.Method, r.URL.Path))
}
