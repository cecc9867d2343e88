package backends

import "context"

// BatchReader reads, for many tasks in one statement each, what the
// one-task reads (GetTask, ListSteps, ListEdges, ListTransitions,
// ListEvents with a TaskID) read for one. The GraphQL API's loaders use it
// so that a nested field costs one query for a whole page of tasks rather
// than one per task. Unlike the one-task reads, an id without a task is
// not an error: it yields nothing. Ids may repeat; each task is read once.
type BatchReader interface {
	// GetTasks returns the tasks that exist of ids, ordered by id.
	GetTasks(ctx context.Context, ids []int64) ([]*Task, error)
	// ListStepsOfTasks returns the steps of the tasks, ordered by task id
	// then Position.
	ListStepsOfTasks(ctx context.Context, taskIDs []int64) ([]*Step, error)
	// ListEdgesOfTasks returns the edges of the tasks' steps, ordered by
	// (child, parent) step id. An edge's task is its child's.
	ListEdgesOfTasks(ctx context.Context, taskIDs []int64) ([]Edge, error)
	// ListTransitionsOfTasks returns the audit trails of the tasks and
	// their steps, ordered by task id then id (MostRecent as
	// ListTransitions sets it).
	ListTransitionsOfTasks(ctx context.Context, taskIDs []int64) ([]*Transition, error)
	// ListEventsOfTasks returns, of each task, its first limit events
	// with Seq > after (DefaultEventLimit when limit is 0), ordered by
	// task id then Seq: ListEvents with EventQuery{TaskID, After, Limit}
	// for each task.
	ListEventsOfTasks(ctx context.Context, taskIDs []int64, after int64, limit int) ([]*Event, error)
}
