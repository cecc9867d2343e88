package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
)

// scheduleView is a schedule as the API shows it: its definition from the
// workflow files and its state from the database.
type scheduleView struct {
	Name      string          `json:"name"`
	Namespace string          `json:"namespace"`
	Workflow  string          `json:"workflow"` // namespace/name, @version when pinned
	Cron      string          `json:"cron"`
	Timezone  string          `json:"timezone"`
	Overlap   string          `json:"overlap"`
	CatchUp   string          `json:"catch_up"`
	Context   json.RawMessage `json:"context"`
	File      string          `json:"file"`
	Paused    bool            `json:"paused"`
	PausedBy  string          `json:"paused_by,omitempty"`
	PausedAt  *time.Time      `json:"paused_at"`
	// NextFiring is the rule's next instant after now; null while paused
	// or when the rule never fires again.
	NextFiring *time.Time  `json:"next_firing"`
	LastFiring *firingView `json:"last_firing"`
}

type firingView struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Outcome string    `json:"outcome"`
	// TaskID is null for a skipped firing.
	TaskID    *int64    `json:"task_id"`
	Actor     string    `json:"actor,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func newFiringView(f *backends.ScheduleFiring) *firingView {
	if f == nil {
		return nil
	}
	v := &firingView{At: f.At, Kind: string(f.Kind), Outcome: string(f.Outcome), Actor: f.Actor, CreatedAt: f.CreatedAt}
	if f.TaskID != 0 {
		id := f.TaskID
		v.TaskID = &id
	}
	return v
}

// scheduleView reads a schedule's state (nil: never seen, running) and last
// firing.
func (s *Server) scheduleView(r *http.Request, sc *definition.Schedule, st *backends.ScheduleState) (scheduleView, error) {
	v := scheduleView{
		Name: sc.Name, Namespace: sc.Namespace(), Workflow: sc.Workflow.String(), Cron: sc.Cron,
		Timezone: sc.Timezone, Overlap: string(sc.Overlap), CatchUp: string(sc.CatchUp), Context: sc.Context,
		File: fmt.Sprintf("%s:%d", sc.DeclRange.Filename, sc.DeclRange.Start.Line),
	}
	if st != nil && st.Paused {
		v.Paused, v.PausedBy, v.PausedAt = true, st.PausedBy, st.PausedAt
	} else if next := sc.Next(s.now()); !next.IsZero() {
		v.NextFiring = &next
	}
	last, err := s.store.ScheduleFirings(r.Context(), sc.Name, 1)
	if err != nil {
		return v, err
	}
	if len(last) > 0 {
		v.LastFiring = newFiringView(last[0])
	}
	return v, nil
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) error {
	schedules := s.eng.Catalog().Schedules()
	if err := s.authorize(r, "schedule:index", Resource{Type: "schedule"}); err != nil {
		// Not every namespace: list the schedules of those the subject
		// may index, one decision per namespace. Any failure denies.
		nf, ok := s.authz.(NamespaceFilter)
		if !ok {
			return err
		}
		var candidates []string
		for _, sc := range schedules {
			if !slices.Contains(candidates, sc.Namespace()) {
				candidates = append(candidates, sc.Namespace())
			}
		}
		allowed, ferr := nf.AllowedNamespaces(r.Context(), SubjectFrom(r.Context()), "schedule:index", candidates)
		if ferr != nil {
			s.log.Warn("filtering the schedule list by namespace failed; denying", "request_id", RequestID(r.Context()), "err", ferr)
			return err
		}
		if len(allowed) == 0 {
			return err
		}
		schedules = slices.DeleteFunc(slices.Clone(schedules), func(sc *definition.Schedule) bool {
			return !slices.Contains(allowed, sc.Namespace())
		})
	}
	states, err := s.scheduleStates(r)
	if err != nil {
		return err
	}
	out := make([]scheduleView, 0, len(schedules))
	for _, sc := range schedules {
		v, err := s.scheduleView(r, sc, states[sc.Name])
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"schedules": out})
	return nil
}

func (s *Server) scheduleStates(r *http.Request) (map[string]*backends.ScheduleState, error) {
	list, err := s.store.ScheduleStates(r.Context())
	if err != nil {
		return nil, err
	}
	states := make(map[string]*backends.ScheduleState, len(list))
	for _, st := range list {
		states[st.Name] = st
	}
	return states, nil
}

// ScheduleResource is the Resource the routes of a loaded schedule
// authorize on (workflow: namespace/name, without a version); the web UI
// asks the policy with it whether to show a schedule's buttons.
func ScheduleResource(namespace, workflow, name string) Resource {
	return Resource{Type: "schedule", Namespace: namespace, Workflow: workflow, Schedule: name}
}

// loadSchedule finds the {name} schedule and authorizes action on it. An
// unknown name is a 404 only to a subject the policy allows the action
// without a namespace (as for tasks), a 403 to anyone else: a schedule's
// existence is not told to who may not act on it.
func (s *Server) loadSchedule(r *http.Request, action string) (*definition.Schedule, error) {
	name := r.PathValue("name")
	sc := s.eng.Catalog().Schedule(name)
	if sc == nil {
		if err := s.authorize(r, action, Resource{Type: "schedule", Schedule: name}); err != nil {
			return nil, err
		}
		return nil, notFound("no schedule %q is loaded", name)
	}
	res := ScheduleResource(sc.Namespace(), sc.Workflow.Namespace+"/"+sc.Workflow.Name, sc.Name)
	if err := s.authorize(r, action, res); err != nil {
		return nil, err
	}
	return sc, nil
}

func (s *Server) showSchedule(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.loadSchedule(r, "schedule:show")
	if err != nil {
		return err
	}
	states, err := s.scheduleStates(r)
	if err != nil {
		return err
	}
	v, err := s.scheduleView(r, sc, states[sc.Name])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// pauseSchedule is POST /v1/schedules/{name}/pause (paused) and /resume.
// The body, if any, is an empty JSON object.
func (s *Server) pauseSchedule(paused bool) func(w http.ResponseWriter, r *http.Request) error {
	action := "schedule:resume"
	if paused {
		action = "schedule:pause"
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		sc, err := s.loadSchedule(r, action)
		if err != nil {
			return err
		}
		if err := decodeBody(r, &struct{}{}, true); err != nil {
			return err
		}
		st, _, err := s.store.SetSchedulePaused(r.Context(), &backends.SetSchedulePausedParams{
			Name: sc.Name, Paused: paused, Actor: actor(r), Now: s.now().UTC().Truncate(time.Microsecond),
		})
		if err != nil {
			return err
		}
		s.wakeScheduler()
		v, err := s.scheduleView(r, sc, st)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, v)
		return nil
	}
}

// triggerSchedule is POST /v1/schedules/{name}/trigger: a task now, also
// for a paused schedule. Its body, if any, is an empty JSON object.
func (s *Server) triggerSchedule(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.loadSchedule(r, "schedule:trigger")
	if err != nil {
		return err
	}
	if err := decodeBody(r, &struct{}{}, true); err != nil {
		return err
	}
	firing, task, _, err := s.eng.FireSchedule(r.Context(), engine.FireRequest{
		Schedule: sc, Kind: backends.FiringManual, At: s.now(), Actor: actor(r),
	})
	if err != nil {
		return err
	}
	if task == nil {
		return fmt.Errorf("schedule %s: the triggered firing names no task", sc.Name)
	}
	s.wakeScheduler()
	w.Header().Set("Location", fmt.Sprintf("/v1/tasks/%d", task.ID))
	writeJSON(w, http.StatusCreated, map[string]any{"firing": newFiringView(firing), "task": newTaskView(task)})
	return nil
}

// actor names the subject of a request for the records it writes.
func actor(r *http.Request) string {
	if sub := SubjectFrom(r.Context()); sub != nil && sub.ID != "" {
		return sub.ID
	}
	return "anonymous"
}

func (s *Server) wakeScheduler() {
	if s.sched != nil {
		s.sched.Wake()
	}
}
