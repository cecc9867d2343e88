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

	// decoded holds each task's answer decoded, once: the steps of a task
	// all ask for its graph and its audit trail.
	mu      sync.Mutex
	decoded map[int64]*decoded
}

type decoded struct {
	once  sync.Once
	value any
	err   error
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
// the rest of g, decoded into a T shared by every field that asks (not to
// be modified). A route's answers are always decoded into the same T.
func get[T any](ctx context.Context, r *Resolver, g *group, taskID int, route string, query url.Values) (*T, error) {
	g = taskGroup(g, taskID)
	key := route + "?" + query.Encode()
	g.mu.Lock()
	l := g.loads[key]
	if l == nil {
		l = &load{decoded: map[int64]*decoded{}}
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
		return nil, err
	}
	l.mu.Lock()
	d := l.decoded[int64(taskID)]
	if d == nil {
		d = &decoded{}
		l.decoded[int64(taskID)] = d
	}
	l.mu.Unlock()
	d.once.Do(func() {
		a, ok := l.answers[int64(taskID)]
		switch {
		case !ok:
			d.err = fmt.Errorf("no answer for task %d's %s", taskID, route)
		case a.Status >= 400:
			d.err = restErrorFrom(a.Status, a.Body)
		default:
			v := new(T)
			if err := json.Unmarshal(a.Body, v); err != nil {
				d.err = fmt.Errorf("decoding task %d's %s: %w", taskID, route, err)
			}
			d.value = v
		}
	})
	if d.err != nil {
		return nil, d.err
	}
	return d.value.(*T), nil
}

// steps is a task's steps.
func (r *Resolver) steps(ctx context.Context, g *group, taskID int) ([]*Step, error) {
	out, err := get[struct {
		Steps []*Step `json:"steps"`
	}](ctx, r, g, taskID, api.BatchSteps, nil)
	if err != nil {
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
	return get[taskGraphJSON](ctx, r, g, taskID, api.BatchGraph, nil)
}

// transitions is a task's audit trail, shared by the task and its steps.
func (r *Resolver) transitions(ctx context.Context, g *group, taskID int) ([]*Transition, error) {
	out, err := get[struct {
		Transitions []*Transition `json:"transitions"`
	}](ctx, r, g, taskID, api.BatchTransitions, nil)
	if err != nil {
		return nil, err
	}
	return out.Transitions, nil
}

// eventPage is a page of GET /v1/tasks/{id}/events, each event decoded
// once with its JSON kept.
type eventPage struct {
	Events []*Event `json:"events"`
}

// events is a page of a task's events, or of its step's when step is
// not "".
func (r *Resolver) events(ctx context.Context, g *group, taskID int, step string, after *string, first *int) ([]*Event, error) {
	q := url.Values{}
	if step != "" {
		q.Set("step", step)
	}
	if after != nil {
		q.Set("after", *after)
	}
	if first != nil {
		q.Set("limit", strconv.Itoa(*first))
	}
	page, err := get[eventPage](ctx, r, g, taskID, api.BatchEvents, q)
	if err != nil {
		return nil, err
	}
	return page.Events, nil
}
