package engine

import (
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/taskerd/taskerd/backends"
)

// MaxLoggedError bounds the handler error message a lifecycle line carries,
// in bytes; a longer one is cut (at a character boundary) and ends in "…".
const MaxLoggedError = 512

// logLifecycle writes the lines an operator follows tasks by, for the
// events of one committed write about task t (docs/operations.md, "Logs"):
//
//   - "task created" (info): task_id, workflow.
//   - "task finished" (info; warn for status error): task_id, workflow,
//     status (complete, error, cancelled, resolved_manually), took (since
//     the task was created).
//   - "step failed; retrying" (warn): task_id, workflow, step, handler,
//     attempt, max_attempts, kind, error, retry_in.
//   - "step blocked" (error): the same without retry_in, with reason
//     (retries_exhausted or not_retryable): the step will not run again
//     unless an operator retries it.
//   - "step resolved manually", "step retry requested", "task retry
//     requested" (info): operators' actions.
//
// Never a step's result or a task's context: they may hold secrets. A
// handler's error message is logged, cut at MaxLoggedError bytes.
func (e *Engine) logLifecycle(events []Event, t *backends.Task) {
	if t == nil || len(events) == 0 {
		return
	}
	ctx := e.taskLogContext(t) // with tracing on, the lines carry the task's trace_id
	// Most writes (a step completing) log nothing: build the task's
	// attributes only for a line that is written.
	attrs := func(level slog.Level) []any {
		if !e.log.Enabled(ctx, level) {
			return nil
		}
		return []any{slog.Int64("task_id", t.ID), slog.String("workflow", t.Namespace+"/"+t.WorkflowName+"@"+t.WorkflowVersion)}
	}
	for _, ev := range events {
		if ev.TaskID != t.ID {
			continue
		}
		switch ev.Type {
		case EventTaskInitializeRequested:
			if task := attrs(slog.LevelInfo); task != nil {
				e.log.Log(ctx, slog.LevelInfo, "task created", task...)
			}
		case EventTaskCompleted, EventTaskFailed, EventTaskCancelled, EventTaskResolvedManually:
			status, level := backends.StateComplete, slog.LevelInfo
			switch ev.Type {
			case EventTaskFailed:
				status, level = backends.StateError, slog.LevelWarn
			case EventTaskCancelled:
				status = backends.StateCancelled
			case EventTaskResolvedManually:
				status = backends.StateResolvedManually
			}
			if task := attrs(level); task != nil {
				took := max(ev.Time.Sub(t.CreatedAt), 0).Round(time.Millisecond)
				e.log.Log(ctx, level, "task finished", append(task, slog.String("status", string(status)), slog.Duration("took", took))...)
			}
		case EventTaskRetryRequested:
			if task := attrs(slog.LevelInfo); task != nil {
				e.log.Log(ctx, slog.LevelInfo, "task retry requested", task...)
			}
		case EventStepFailed, EventStepLeaseExpired:
			level, msg := slog.LevelError, "step blocked"
			if ev.Retryable {
				level, msg = slog.LevelWarn, "step failed; retrying"
			}
			task := attrs(level)
			if task == nil {
				continue
			}
			a := append(task, slog.String("step", ev.StepName), slog.String("handler", ev.Handler),
				slog.Int("attempt", ev.Attempt), slog.Int("max_attempts", ev.RetryLimit))
			if ev.Error != nil {
				a = append(a, slog.String("kind", ev.Error.Kind), slog.String("error", truncate(ev.Error.Message, MaxLoggedError)))
			}
			if ev.Retryable {
				if b, ok := backoffOf(events, ev.StepID); ok {
					a = append(a, slog.Duration("retry_in", time.Duration(b.BackoffSeconds*float64(time.Second)).Round(time.Millisecond)))
				}
			} else {
				reason := "not_retryable"
				if ev.Attempt >= ev.RetryLimit {
					reason = "retries_exhausted"
				}
				a = append(a, slog.String("reason", reason))
			}
			e.log.Log(ctx, level, msg, a...)
		case EventStepResolvedManually, EventStepRetryRequested:
			msg := "step resolved manually"
			if ev.Type == EventStepRetryRequested {
				msg = "step retry requested"
			}
			if task := attrs(slog.LevelInfo); task != nil {
				e.log.Log(ctx, slog.LevelInfo, msg, append(task, slog.String("step", ev.StepName))...)
			}
		}
	}
}

// backoffOf finds the backoff event of step stepID among events.
func backoffOf(events []Event, stepID int64) (Event, bool) {
	for _, ev := range events {
		if ev.Type == EventStepBackoff && ev.StepID == stepID {
			return ev, true
		}
	}
	return Event{}, false
}

// truncate cuts s to at most n bytes, at a character boundary, marking the
// cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
