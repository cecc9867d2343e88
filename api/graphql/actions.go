package graphql

import (
	"context"
	"net/url"
)

// taskPath is /v1/tasks/{id}; the REST route refuses an id that is not one.
func taskPath(id string) string { return "/v1/tasks/" + url.PathEscape(id) }

func (r *Resolver) taskAction(ctx context.Context, id, verb string, reason *string) (*Task, error) {
	body := map[string]any{}
	if reason != nil {
		body["reason"] = *reason
	}
	var t Task
	if err := r.call(ctx, "POST", taskPath(id)+"/"+verb, body, nil, &t); err != nil {
		return nil, err
	}
	return groupTasks([]*Task{&t})[0], nil
}

func (r *Resolver) stepAction(ctx context.Context, taskID, name, verb string, reason *string, results JSON) (*Step, error) {
	body := map[string]any{}
	if reason != nil {
		body["reason"] = *reason
	}
	if len(results) > 0 {
		body["results"] = results
	}
	var s Step
	if err := r.call(ctx, "POST", taskPath(taskID)+"/steps/"+url.PathEscape(name)+"/"+verb, body, nil, &s); err != nil {
		return nil, err
	}
	return groupSteps(newGroup(int64(s.TaskID)), []*Step{&s})[0], nil
}
