package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"

	"github.com/taskerd/taskerd/backends"
)

// Answer is what a route wrote: its status and JSON body.
type Answer struct {
	Status int
	Body   []byte
}

// Batch routes: the sub-routes of GET /v1/tasks/{id}/ that BatchGET
// answers for many tasks at once.
const (
	BatchSteps       = "steps"
	BatchTransitions = "transitions"
	BatchGraph       = "graph"
	BatchEvents      = "events"
)

// BatchGET answers, for each of taskIDs, what GET /v1/tasks/{id}/<route>
// (with query) answers for that task: the same action on the same
// resource authorized for each task, the same status and JSON body. It
// reads the store once per kind of row for all the tasks, where the
// routes read it once per task: the GraphQL endpoint (api/graphql) uses it
// for nested lists. route is BatchSteps, BatchTransitions, BatchGraph (as
// format=json) or BatchEvents; r is the authenticated request the answers
// are for.
func (s *Server) BatchGET(r *http.Request, route string, query url.Values, taskIDs []int64) map[int64]Answer {
	out := make(map[int64]Answer, len(taskIDs))
	ids := slices.Clone(taskIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	fail := func(id int64, err error) {
		rec := NewRecorder()
		writeError(rec, fromError(err))
		out[id] = Answer{Status: rec.Status, Body: rec.Body.Bytes()}
	}
	// failAll: a failure of the whole batch (a bad query, the store),
	// logged once as the route would log it.
	failAll := func(ids []int64, err error) {
		if e := fromError(err); e.Status >= 500 {
			s.log.WarnContext(r.Context(), "batch read failed", "request_id", RequestID(r.Context()),
				"route", "GET /v1/tasks/{id}/"+route, "tasks", len(ids), "err", err)
		}
		for _, id := range ids {
			fail(id, err)
		}
	}
	action, typ := "task:show", "task"
	var evq taskEventQuery
	switch route {
	case BatchSteps:
		action, typ = "step:index", "step"
	case BatchTransitions, BatchGraph:
	case BatchEvents:
		var err error
		if evq, err = taskEventsQuery(query); err != nil {
			failAll(ids, err)
			return out
		}
	default:
		failAll(ids, notFound("no route GET /v1/tasks/{id}/%s", route))
		return out
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	r = r.WithContext(ctx)
	tasks, err := s.store.GetTasks(ctx, ids)
	if err != nil {
		failAll(ids, err)
		return out
	}
	byID := make(map[int64]*backends.Task, len(tasks))
	for _, t := range tasks {
		byID[t.ID] = t
	}
	// One decision per task, as each route makes for its task.
	var allowed []int64
	for _, id := range ids {
		t := byID[id]
		if t == nil {
			// As authorizeTask: whether it exists is told only to a
			// subject allowed the action without a namespace.
			if err := s.authorize(r, action, Resource{Type: typ, TaskID: id}); err != nil {
				fail(id, err)
			} else {
				fail(id, notFound("task %d does not exist", id))
			}
			continue
		}
		if err := s.authorize(r, action, TaskResource(t, typ, "")); err != nil {
			fail(id, err)
			continue
		}
		allowed = append(allowed, id)
	}
	if len(allowed) == 0 {
		return out
	}
	bodies, err := s.batchBodies(ctx, route, evq, allowed)
	if err != nil {
		failAll(allowed, err)
		return out
	}
	for _, id := range allowed {
		rec := NewRecorder()
		writeJSON(rec, http.StatusOK, bodies[id])
		out[id] = Answer{Status: rec.Status, Body: rec.Body.Bytes()}
	}
	return out
}

// batchBodies reads route's rows for the tasks ids and returns each task's
// body, as its route builds it.
func (s *Server) batchBodies(ctx context.Context, route string, evq taskEventQuery, ids []int64) (map[int64]any, error) {
	out := make(map[int64]any, len(ids))
	if route == BatchEvents {
		// With a step, each task's first page of events is read for all
		// of them and filtered; a task whose step has more events than
		// one page holds reads on alone, as the route does.
		limit := evq.Limit + 1
		if evq.Step != "" {
			limit = maxEventPage
		}
		events, err := s.store.ListEventsOfTasks(ctx, ids, evq.After, limit)
		if err != nil {
			return nil, err
		}
		byTask := groupBy(events, func(e *backends.Event) int64 { return e.TaskID })
		for _, id := range ids {
			page := byTask[id]
			if evq.Step != "" {
				if page, err = s.taskEvents(ctx, id, evq, nonNilEvents(page)); err != nil {
					return nil, err
				}
			}
			out[id] = eventPageOf(page, evq.Limit)
		}
		return out, nil
	}
	if route == BatchSteps {
		views, err := consistentStepViews(func() ([]*backends.Step, []backends.ReadinessRow, error) {
			steps, err := s.store.ListStepsOfTasks(ctx, ids)
			if err != nil {
				return nil, nil, err
			}
			rows, err := s.store.StepReadinessBatch(ctx, ids, s.now())
			return steps, rows, err
		})
		if err != nil {
			return nil, err
		}
		viewsOf := groupBy(views, func(v stepView) int64 { return v.TaskID })
		for _, id := range ids {
			out[id] = map[string]any{"steps": nonNilViews(viewsOf[id])}
		}
		return out, nil
	}
	steps, err := s.store.ListStepsOfTasks(ctx, ids)
	if err != nil {
		return nil, err
	}
	if route == BatchTransitions {
		trs, err := s.store.ListTransitionsOfTasks(ctx, ids)
		if err != nil {
			return nil, err
		}
		stepsOf := groupBy(steps, func(st *backends.Step) int64 { return st.TaskID })
		trsOf := groupBy(trs, func(t *backends.Transition) int64 { return t.TaskID })
		for _, id := range ids {
			out[id] = map[string]any{"transitions": transitionViews(trsOf[id], stepsOf[id])}
		}
		return out, nil
	}
	// The graph: steps (no readiness) and edges; an edge's task is its
	// child step's.
	edges, err := s.store.ListEdgesOfTasks(ctx, ids)
	if err != nil {
		return nil, err
	}
	viewsOf := groupBy(stepViewsOf(steps, nil), func(v stepView) int64 { return v.TaskID })
	taskOf := make(map[int64]int64, len(steps))
	for _, st := range steps {
		taskOf[st.ID] = st.TaskID
	}
	edgesOf := groupBy(edges, func(e backends.Edge) int64 { return taskOf[e.ChildStepID] })
	for _, id := range ids {
		out[id] = graphOf(viewsOf[id], edgesOf[id])
	}
	return out, nil
}

// groupBy groups xs by key, keeping their order.
func groupBy[T any](xs []T, key func(T) int64) map[int64][]T {
	out := map[int64][]T{}
	for _, x := range xs {
		out[key(x)] = append(out[key(x)], x)
	}
	return out
}

func nonNilEvents(v []*backends.Event) []*backends.Event {
	if v == nil {
		return []*backends.Event{}
	}
	return v
}

func nonNilViews(v []stepView) []stepView {
	if v == nil {
		return []stepView{}
	}
	return v
}
