package graphql

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"

	"github.com/taskerd/taskerd/api"
)

// Nested lists are read a level at a time. The tasks of one list (a page
// of tasks, or the one task a field returned) form a group, and so do the
// steps read for them: the first of them to resolve a nested field
// (steps, transitions, events, parents, children) reads it for the whole
// group with one api.BatchGET, which authorizes each task as its REST
// route would and reads the store once for all of them; its siblings take
// their part of that answer. Every task of a list resolves the same
// selection, so nothing is read that is not asked for. This is a
// dataloader whose batch is known when the list is, so it waits for no
// timer.
type group struct {
	ids []int64

	mu    sync.Mutex
	loads map[string]*load // by route?query
}

type load struct {
	once    sync.Once
	answers map[int64]api.Answer
}

// newGroup is the group of these tasks.
func newGroup(ids ...int64) *group {
	return &group{ids: slices.Clone(ids), loads: map[string]*load{}}
}

// groupTasks puts tasks in one group and returns them.
func groupTasks(tasks []*Task) []*Task {
	ids := make([]int64, len(tasks))
	for i, t := range tasks {
		ids[i] = int64(t.ID)
	}
	g := newGroup(ids...)
	for _, t := range tasks {
		t.group = g
	}
	return tasks
}

// taskGroup is t's group, a group of its own when no list made one.
func taskGroup(g *group, taskID int) *group {
	if g != nil && slices.Contains(g.ids, int64(taskID)) {
		return g
	}
	return newGroup(int64(taskID))
}

// get is GET /v1/tasks/{taskID}/route?query's answer for taskID, read with
// the rest of g, decoded into out.
func (r *Resolver) get(ctx context.Context, g *group, taskID int, route string, query url.Values, out any) error {
	g = taskGroup(g, taskID)
	key := route + "?" + query.Encode()
	g.mu.Lock()
	l := g.loads[key]
	if l == nil {
		l = &load{}
		g.loads[key] = l
	}
	g.mu.Unlock()
	var err error
	l.once.Do(func() {
		orig, _ := ctx.Value(requestKey{}).(*http.Request)
		if orig == nil {
			err = &restError{status: http.StatusUnauthorized, message: "authentication required"}
			return
		}
		l.answers = r.api.BatchGET(orig.WithContext(ctx), route, query, g.ids)
	})
	if err != nil {
		return err
	}
	a, ok := l.answers[int64(taskID)]
	if !ok {
		return fmt.Errorf("no answer for task %d's %s", taskID, route)
	}
	if a.Status >= 400 {
		return restErrorFrom(a.Status, a.Body)
	}
	if err := json.Unmarshal(a.Body, out); err != nil {
		return fmt.Errorf("decoding task %d's %s: %w", taskID, route, err)
	}
	return nil
}

// steps is a task's steps, in the group of g's steps.
func (r *Resolver) steps(ctx context.Context, g *group, taskID int) ([]*Step, error) {
	var out struct {
		Steps []*Step `json:"steps"`
	}
	if err := r.get(ctx, g, taskID, api.BatchSteps, nil, &out); err != nil {
		return nil, err
	}
	return out.Steps, nil
}

// groupSteps gives steps the group their tasks are in.
func groupSteps(g *group, steps []*Step) []*Step {
	for _, s := range steps {
		s.group = g
	}
	return steps
}

// taskGraph is a task's graph (GET /v1/tasks/{id}/graph?format=json).
func (r *Resolver) taskGraph(ctx context.Context, g *group, taskID int) (*taskGraphJSON, error) {
	var out taskGraphJSON
	if err := r.get(ctx, g, taskID, api.BatchGraph, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// transitions is a task's audit trail, shared by the task and its steps.
func (r *Resolver) transitions(ctx context.Context, g *group, taskID int) ([]*Transition, error) {
	var out struct {
		Transitions []*Transition `json:"transitions"`
	}
	if err := r.get(ctx, g, taskID, api.BatchTransitions, nil, &out); err != nil {
		return nil, err
	}
	return out.Transitions, nil
}

// events is a page of a task's events.
func (r *Resolver) events(ctx context.Context, g *group, taskID int, after *string, first *int) ([]*Event, error) {
	q := url.Values{}
	if after != nil {
		q.Set("after", *after)
	}
	if first != nil {
		q.Set("limit", strconv.Itoa(*first))
	}
	var page struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := r.get(ctx, g, taskID, api.BatchEvents, q, &page); err != nil {
		return nil, err
	}
	out := make([]*Event, 0, len(page.Events))
	for _, raw := range page.Events {
		ev, err := eventFrom(raw, "")
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}
