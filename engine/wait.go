package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// WaitTask blocks until the task leaves pending and in_progress (it is
// complete, error, cancelled or resolved_manually) and returns it as it is
// then, or returns ctx's error. It listens to this engine's events and, as
// events may come from other nodes or be dropped, also looks every second.
// A task in error is returned although an operator may still retry it.
func (e *Engine) WaitTask(ctx context.Context, taskID int64) (*backends.Task, error) {
	events, cancel := e.Subscribe(256)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		task, err := e.store.GetTask(ctx, taskID)
		if err != nil {
			return nil, fmt.Errorf("waiting for task %d: %w", taskID, err)
		}
		if task.State != backends.StatePending && task.State != backends.StateInProgress {
			return task, nil
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-tick.C:
				break wait
			case ev := <-events:
				if ev.TaskID != taskID {
					continue
				}
				switch ev.Type {
				case EventTaskCompleted, EventTaskFailed, EventTaskCancelled, EventTaskResolvedManually:
					break wait
				}
			}
		}
	}
}
