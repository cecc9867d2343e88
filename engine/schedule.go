package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
)

// ScheduleSource is the SourceSystem of the tasks schedules create.
const ScheduleSource = "taskerd-scheduler"

// ScheduleTag is the tag every task of the schedule carries.
func ScheduleTag(name string) string { return "schedule:" + name }

// FireRequest is one firing of a schedule.
type FireRequest struct {
	Schedule *definition.Schedule
	Kind     backends.FiringKind
	// At is the firing's instant: its cron instant, or the time of a manual
	// trigger. It is truncated to microseconds, in UTC.
	At time.Time
	// Actor is who triggered a manual firing.
	Actor string
}

// FiringKey is the idempotency key of the task of a firing: the same
// firing asked for by any number of nodes names one task.
func FiringKey(name string, kind backends.FiringKind, at time.Time) string {
	k := "schedule/" + name + "/"
	if kind == backends.FiringManual {
		k += "manual/"
	}
	return k + at.UTC().Format(time.RFC3339Nano)
}

// FireSchedule records a firing of a schedule and creates its task in one
// transaction (backends.ScheduleStore.FireSchedule): created is false when
// the firing had already happened (on this node or another), and task is
// then the task it created, or nil if it was skipped or its task is gone.
// An overlap = "skip" schedule records a scheduled (not manual) firing as
// skipped while an earlier task of it is unfinished; "cancel_previous" cancels those first,
// through CancelTask (events, and handlers running here are stopped). The
// task's errors are CreateTask's. A scheduled firing of an instant the
// schedule already handled, of which no record is left, is refused with
// backends.ErrFiringHandled.
func (e *Engine) FireSchedule(ctx context.Context, req FireRequest) (*backends.ScheduleFiring, *backends.Task, bool, error) {
	s := req.Schedule
	at := req.At.UTC().Truncate(time.Microsecond)
	cr := CreateRequest{
		Workflow:       s.Workflow.String(),
		Context:        s.Context,
		Initiator:      ScheduleTag(s.Name),
		SourceSystem:   ScheduleSource,
		Reason:         fmt.Sprintf("schedule %s fired for %s", s.Name, at.Format(time.RFC3339)),
		Tags:           []string{ScheduleTag(s.Name)},
		IdempotencyKey: FiringKey(s.Name, req.Kind, at),
	}
	if req.Kind == backends.FiringManual {
		cr.Initiator = req.Actor
		cr.Reason = fmt.Sprintf("schedule %s triggered by %s", s.Name, req.Actor)
	}
	p, wf, err := e.createParams(cr)
	if err != nil {
		return nil, nil, false, fmt.Errorf("schedule %s: %w", s.Name, err)
	}
	if s.Overlap == definition.OverlapCancelPrevious {
		// Only the tasks of earlier firings: this one may already have
		// been fired by another node, and its task is not "previous".
		if err := e.cancelScheduleTasks(ctx, s.Name, at); err != nil {
			return nil, nil, false, err
		}
	}
	fp := &backends.FireScheduleParams{
		Schedule: s.Name, Kind: req.Kind, At: at, Actor: req.Actor,
		// Someone who triggers a schedule asks for a task: skip is for
		// the cron rule's firings only.
		SkipIfRunning: s.Overlap == definition.OverlapSkip && req.Kind == backends.FiringScheduled,
		Task:          p,
	}
	w := e.gate.begin(p.Now)
	wctx, wrote := e.collect(ctx)
	firing, created, err := e.store.FireSchedule(wctx, fp)
	if err != nil {
		w.end(e.publish, nil)
		return nil, nil, false, fmt.Errorf("schedule %s: creating a task of workflow %s: %w", s.Name, wf.ID(), err)
	}
	events := wrote.all()
	var task *backends.Task
	if firing.TaskID != 0 {
		if task, err = e.store.GetTask(ctx, firing.TaskID); err != nil {
			task = nil // retention may have deleted it
		}
	}
	if task != nil {
		e.logLifecycle(events, task)
	}
	w.end(e.publish, events)
	if created && firing.TaskID != 0 {
		e.Wake()
	}
	return firing, task, created, nil
}

// cancelScheduleTasks cancels the unfinished tasks of a schedule's firings
// before the instant at. A task that finished meanwhile is no reason to
// fail the firing.
func (e *Engine) cancelScheduleTasks(ctx context.Context, name string, at time.Time) error {
	ids, err := e.store.UnfinishedScheduleTasks(ctx, name, at)
	if err != nil {
		return fmt.Errorf("schedule %s: %w", name, err)
	}
	for _, id := range ids {
		if _, err := e.CancelTask(ctx, id, "schedule "+name+" fired again (overlap = cancel_previous)"); err != nil {
			if t, gerr := e.store.GetTask(ctx, id); gerr == nil && t.State.Finished() {
				continue
			}
			return fmt.Errorf("schedule %s: cancelling its previous task %d: %w", name, id, err)
		}
	}
	return nil
}
