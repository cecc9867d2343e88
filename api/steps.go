package api

import (
	"encoding/json"
	"net/http"

	"github.com/taskerd/taskerd/backends"
)

// loadStep reads the task of {id} and its step {name}, authorizing action.
func (s *Server) loadStep(r *http.Request, action string) (*backends.Task, *backends.Step, error) {
	name := r.PathValue("name")
	task, err := s.loadTaskFor(r, action, "step", name)
	if err != nil {
		return nil, nil, err
	}
	steps, err := s.store.ListSteps(r.Context(), task.ID)
	if err != nil {
		return nil, nil, err
	}
	for _, st := range steps {
		if st.Name == name {
			return task, st, nil
		}
	}
	return nil, nil, notFound("task %d has no step %q", task.ID, name)
}

func (s *Server) listSteps(w http.ResponseWriter, r *http.Request) error {
	task, err := s.loadTaskFor(r, "step:index", "step", "")
	if err != nil {
		return err
	}
	views, err := s.stepViews(r, task.ID, s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"steps": views})
	return nil
}

func (s *Server) showStep(w http.ResponseWriter, r *http.Request) error {
	task, step, err := s.loadStep(r, "step:show")
	if err != nil {
		return err
	}
	return s.writeStep(w, r, task.ID, step.ID)
}

func (s *Server) writeStep(w http.ResponseWriter, r *http.Request, taskID, stepID int64) error {
	views, err := s.stepViews(r, taskID, s.now())
	if err != nil {
		return err
	}
	for _, v := range views {
		if v.ID == stepID {
			writeJSON(w, http.StatusOK, v)
			return nil
		}
	}
	return notFound("step %d of task %d does not exist", stepID, taskID)
}

type stepActionBody struct {
	Reason  string          `json:"reason"`
	Results json.RawMessage `json:"results"`
}

// stepAction is POST /v1/tasks/{id}/steps/{name}/cancel|retry|resolve.
func (s *Server) stepAction(verb string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		task, step, err := s.loadStep(r, "step:"+verb)
		if err != nil {
			return err
		}
		var body stepActionBody
		if err := decodeBody(r, &body, true); err != nil {
			return err
		}
		if len(body.Results) > 0 && verb != "resolve" {
			return badRequest("results may only be given when resolving a step")
		}
		reason := actionReason(r, verb, body.Reason)
		switch verb {
		case "cancel":
			_, err = s.eng.CancelStep(r.Context(), step.ID, reason)
		case "retry":
			_, err = s.eng.RetryStep(r.Context(), step.ID, reason)
		case "resolve":
			if len(body.Results) > 0 && body.Results[0] != '{' {
				return badRequest("results must be a JSON object")
			}
			_, err = s.eng.ResolveStep(r.Context(), step.ID, body.Results, reason)
		}
		if err != nil {
			return err
		}
		return s.writeStep(w, r, task.ID, step.ID)
	}
}
