package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/live"
	"github.com/taskerd/taskerd/internal/logging"
)

// The live view of a task (internal/live) as run and task watch use it.

// liveOptions says how to draw on out: in place when out is a terminal
// (and neither --plain nor TERM=dumb says otherwise), colored unless
// NO_COLOR is set, cut to the terminal's size; else a line per change.
func liveOptions(out io.Writer, plain bool) live.Options {
	f, ok := out.(*os.File)
	if plain || !ok || !term.IsTerminal(int(f.Fd())) || os.Getenv("TERM") == "dumb" {
		return live.Options{}
	}
	fd := int(f.Fd())
	return live.Options{
		TTY:   true,
		Color: os.Getenv("NO_COLOR") == "", // https://no-color.org: set and not empty
		Size: func() (int, int) {
			w, h, err := term.GetSize(fd)
			if err != nil {
				return 0, 0
			}
			return w, h
		},
	}
}

// nodeView is the live view of run and resume: on a terminal, unless
// --json or --plain; nil otherwise. stderr is where the node's own lines
// (logs, "cancelling") go: through the view when stderr is a terminal too,
// so that they appear above the frame instead of garbling it.
func nodeView(cmd *cobra.Command, flags nodeFlags) (view *live.Renderer, stderr io.Writer) {
	stderr = cmd.ErrOrStderr()
	if flags.json {
		return nil, stderr
	}
	opt := liveOptions(cmd.OutOrStdout(), flags.plain)
	if !opt.TTY {
		return nil, stderr
	}
	view = live.New(cmd.OutOrStdout(), opt)
	if logging.IsTerminal(stderr) {
		stderr = view.Above(stderr)
	}
	return view, stderr
}

// stepFailure reads a step's stored error (backends.StepError as JSON).
func stepFailure(raw json.RawMessage) (kind, message string) {
	var e backends.StepError
	if len(raw) == 0 || json.Unmarshal(raw, &e) != nil {
		return "", ""
	}
	return e.Kind, e.Message
}

// storeSource reads a task from the store of this process, for run and
// resume.
type storeSource struct {
	store  backends.Store
	taskID int64
}

func (s storeSource) Snapshot(ctx context.Context) (live.Snapshot, error) {
	task, err := s.store.GetTask(ctx, s.taskID)
	if err != nil {
		return live.Snapshot{}, err
	}
	steps, err := s.store.ListSteps(ctx, s.taskID)
	if err != nil {
		return live.Snapshot{}, err
	}
	rows, err := s.store.StepReadiness(ctx, s.taskID, engine.RealClock{}.Now())
	if err != nil {
		return live.Snapshot{}, err
	}
	byID := make(map[int64]backends.ReadinessRow, len(rows))
	for _, r := range rows {
		byID[r.StepID] = r
	}
	snap := live.Snapshot{
		TaskID:   task.ID,
		Workflow: fmt.Sprintf("%s/%s@%s", task.Namespace, task.WorkflowName, task.WorkflowVersion),
		State:    string(task.State),
	}
	for _, st := range steps {
		ls := live.Step{
			Name: st.Name, State: string(st.State), Attempts: st.Attempts, RetryLimit: st.RetryLimit,
			StartedAt: st.StartedAt, EndedAt: st.LastAttemptedAt,
		}
		ls.ErrorKind, ls.ErrorMessage = stepFailure(st.Error)
		if r, ok := byID[st.ID]; ok && st.State == backends.StateError {
			ls.Blocked = r.PermanentlyBlocked()
			if !ls.Blocked {
				ls.NextRetryAt = r.NextRetryAt
			}
		}
		snap.Steps = append(snap.Steps, ls)
	}
	return snap, nil
}

// apiSnapshot is the live view of the API's task (GET /v1/tasks/{id}).
func apiSnapshot(t apiTask) live.Snapshot {
	snap := live.Snapshot{TaskID: t.ID, Workflow: t.Workflow + "@" + t.Version, State: t.Status}
	for _, st := range t.Steps {
		ls := live.Step{
			Name: st.Name, State: st.Status, Attempts: st.Attempts, RetryLimit: st.RetryLimit,
			StartedAt: st.StartedAt, EndedAt: st.LastAttemptedAt,
		}
		ls.ErrorKind, ls.ErrorMessage = stepFailure(st.Error)
		if r := st.Readiness; r != nil && st.Status == string(backends.StateError) {
			ls.Blocked = r.PermanentlyBlocked
			if !ls.Blocked {
				ls.NextRetryAt = r.NextRetryAt
			}
		}
		snap.Steps = append(snap.Steps, ls)
	}
	return snap
}

// taskSucceeded: the exit code of run, resume and task watch is 0 for a
// task that ended complete or was resolved manually, 1 otherwise.
func taskSucceeded(state string) bool {
	return state == string(backends.StateComplete) || state == string(backends.StateResolvedManually)
}

// endLine is the one line saying why a task that is over did not succeed.
func endLine(s live.Snapshot) string {
	if s.State == live.StateCancelled {
		return fmt.Sprintf("task %d was cancelled", s.TaskID)
	}
	line := fmt.Sprintf("task %d is in %s", s.TaskID, s.State)
	for i, st := range s.BlockedSteps() {
		sep := ": "
		if i > 0 {
			sep = "; "
		}
		line += fmt.Sprintf("%sstep %s blocked after %d of %d attempts", sep, st.Name, st.Attempts, st.RetryLimit)
		if st.ErrorKind != "" {
			line += " (" + st.ErrorKind + ")"
		}
		if st.ErrorMessage != "" {
			line += ": " + st.ErrorMessage
		}
	}
	return oneLine(errors.New(line)).Error() // a message may hold newlines
}

// liveRefresh is how often run redraws its view when no event comes.
const liveRefresh = 250 * time.Millisecond
