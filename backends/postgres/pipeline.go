package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskerd/taskerd/backends"
)

// The hot paths — a claim and a step result — are what every step costs,
// so they are written to cross the network as few times as possible:
//
//   - ClaimSteps is ONE statement (claimStepsSQL), in a transaction of its
//     own sent with it in one batch: pick and lock, move the steps and
//     write their transitions, start their pending tasks, return the rows
//     with the parents' results. A second batch carries the claim's events,
//     built from those rows, and COMMIT.
//   - CompleteStep and FailStep are written in batches, several workers'
//     results in one transaction of two pipelines (results.go).
//   - CreateTask without an idempotency key is one statement (createTaskSQL)
//     and its event (createdEventsSQL, which takes the task's id from the
//     statement before it), sent with BEGIN and COMMIT in one round trip.

// retryableTx reports whether PostgreSQL aborted a transaction that may
// simply be run again (a deadlock victim or a serialization failure).
func retryableTx(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// retrying runs fn, and again while PostgreSQL aborts it as retryableTx
// says, up to maxTxAttempts in all; fn must set its results afresh on each
// run. It returns fn's last error.
func retrying(fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt >= maxTxAttempts || !retryableTx(err) {
			return err
		}
	}
}

// createTaskSQL inserts a task, its first transition, its namespace (when
// new), all its steps and edges in one statement: steps come as parallel arrays (one element per
// step, in position order), edges as pairs of positions. $1–$11 the task,
// $12 now; steps $13 name, $14 handler, $15 config, $16 retryable, $17
// retry limit, $18 base, $19 max, $20 timeout, $21 skippable, $22
// unsatisfied parents; edges $23 parent positions, $24 child positions.
// It returns the task's row as written.
const createTaskSQL = `WITH task AS (
	INSERT INTO tasks (namespace, workflow_name, workflow_version, context, initiator, source_system,
		reason, tags, requested_at, idempotency_key, request_hash, state, transition_count, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', 1, $12, $12) RETURNING *
), logged AS (
	INSERT INTO transitions (task_id, to_state, reason, sort_key, created_at)
	SELECT id, 'pending', 'created', 1, $12 FROM task
), noted AS (
	INSERT INTO task_namespaces (namespace) VALUES ($1) ON CONFLICT DO NOTHING
), new_steps AS (
	INSERT INTO steps (task_id, name, position, handler, config, retryable, retry_limit,
		backoff_base_us, backoff_max_us, timeout_us, skippable, state, unsatisfied_parents, created_at, updated_at)
	SELECT task.id, u.name, u.ord - 1, u.handler, u.config, u.retryable, u.retry_limit,
		u.base, u.max, u.timeout, u.skippable, 'pending', u.unsatisfied, $12, $12
	  FROM task, unnest($13::text[], $14::text[], $15::text[], $16::boolean[], $17::integer[],
		$18::bigint[], $19::bigint[], $20::bigint[], $21::boolean[], $22::integer[])
		WITH ORDINALITY AS u(name, handler, config, retryable, retry_limit, base, max, timeout, skippable, unsatisfied, ord)
	RETURNING id, position
), new_edges AS (
	INSERT INTO edges (parent_step_id, child_step_id)
	SELECT p.id, c.id
	  FROM unnest($23::integer[], $24::integer[]) AS e(parent, child)
	  JOIN new_steps p ON p.position = e.parent
	  JOIN new_steps c ON c.position = e.child
)
SELECT ` + taskColumns + ` FROM task`

// createdEventsSQL is appendEventsSQL for the events of the task that
// createTaskSQL has just inserted on this connection, so that they can go
// in the same round trip, before the task's id is known: they are one run
// (one task's), and its row takes the id from the task's sequence (currval
// is this session's, whatever other sessions take meanwhile); the body $4
// does not hold it (EncodeEventRun leaves what a run's events share to the
// row's columns). $1 the number of events, $2 the namespace, $3 the
// instant. Like appendEventsSQL, it is the last statement before the
// COMMIT.
const createdEventsSQL = `WITH n AS (
	UPDATE event_seq SET last = last + $1 RETURNING last
), ins AS (
	INSERT INTO events (seq, last_seq, task_id, namespace, created_at, body)
	SELECT n.last - $1 + 1, n.last, currval(pg_get_serial_sequence('tasks', 'id')), $2, $3, $4
	  FROM n
)
SELECT last FROM n`

// createdEventArgs are createdEventsSQL's arguments for the events of a
// task that is being created, with TaskID 0 (as CreatedEvents makes them
// from a task without its id); none when their body would hold the task's
// id (a run whose events differ in what a run shares: a created task's
// never do), which then has to wait for it.
func createdEventArgs(events []*backends.Event) ([]any, error) {
	for _, ev := range events {
		ev.Time = ts(ev.Time) // as eventArgs does
	}
	body, err := backends.EncodeEventRun(events)
	if err != nil {
		return nil, err
	}
	if body[0] != '{' {
		return nil, nil
	}
	return []any{len(events), events[0].Namespace, events[0].Time, string(body)}, nil
}

// createTaskArgs are createTaskSQL's arguments for p, whose steps it
// checks (unique names, parents before children).
func createTaskArgs(p *backends.CreateTaskParams) ([]any, error) {
	n := len(p.Steps)
	var (
		names, handlers, configs = make([]string, n), make([]string, n), make([]*string, n)
		retryable, skippable     = make([]bool, n), make([]bool, n)
		limits, unsatisfied      = make([]int32, n), make([]int32, n)
		bases, maxes, timeouts   = make([]int64, n), make([]int64, n), make([]int64, n)
		parents, children        []int32
	)
	positions := make(map[string]int32, n)
	for i, ns := range p.Steps {
		if _, dup := positions[ns.Name]; dup {
			return nil, fmt.Errorf("step %q given twice", ns.Name)
		}
		for _, parent := range ns.Parents {
			pos, ok := positions[parent]
			if !ok {
				return nil, fmt.Errorf("step %q depends on %q, which is not an earlier step", ns.Name, parent)
			}
			parents, children = append(parents, pos), append(children, int32(i))
		}
		positions[ns.Name] = int32(i)
		names[i], handlers[i] = ns.Name, ns.Handler
		if len(ns.Config) > 0 {
			c := string(ns.Config)
			configs[i] = &c
		}
		retryable[i], skippable[i], limits[i] = ns.Retryable, ns.Skippable, int32(ns.RetryLimit)
		bases[i], maxes[i], timeouts[i] = ns.BackoffBase.Microseconds(), ns.BackoffMax.Microseconds(), ns.Timeout.Microseconds()
		unsatisfied[i] = int32(len(ns.Parents)) // nothing is bypassed here
	}
	tags := p.Tags
	if tags == nil {
		tags = []string{}
	}
	taskCtx := p.Context
	if len(taskCtx) == 0 {
		taskCtx = json.RawMessage(`{}`)
	}
	now := ts(p.Now)
	return []any{p.Namespace, p.WorkflowName, p.WorkflowVersion, string(taskCtx), p.Initiator,
		p.SourceSystem, p.Reason, tags, now, nil, p.RequestHash, now,
		names, handlers, configs, retryable, limits, bases, maxes, timeouts, skippable, unsatisfied,
		parents, children}, nil
}

// createTaskPipelined is CreateTask for a request without an idempotency
// key and without bypassed steps, with at least one step (the common case):
// BEGIN, createTaskSQL, its events and COMMIT in one round trip. The
// events are built before the task exists, from the request: a new task
// of this kind is pending, and its id is all they lack, which
// createdEventsSQL fills in.
//
// It does not finalize, because finalize cannot move such a task: every
// step is pending with no attempt, so no step is complete (not
// all_complete), none is in error (not blocked_by_failures) and none is
// cancelled, and backends.Decide then answers continue, which leaves a
// pending task where it is. TestCreateNeedsNoFinalize in backendtest holds
// the stores to that.
func (s *Store) createTaskPipelined(ctx context.Context, p *backends.CreateTaskParams) (task *backends.Task, events []*backends.Event, err error) {
	args, err := createTaskArgs(p)
	if err != nil {
		return nil, nil, err
	}
	events = backends.CreatedEvents(&backends.Task{Namespace: p.Namespace, WorkflowName: p.WorkflowName,
		State: backends.StatePending}, p.Now)
	evArgs, err := createdEventArgs(events)
	if err != nil {
		return nil, nil, err
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Release()
	defer rollbackOnError(ctx, conn, &err)
	w := s.wakes.noteAt(time.Time{}) // a new task has a ready step
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(createTaskSQL, args...)
	if evArgs != nil {
		b.Queue(createdEventsSQL, evArgs...)
		w.queue(b)
		b.Queue("COMMIT")
	}
	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		if task, err = scanTask(br.QueryRow()); err != nil {
			return err
		}
		if evArgs != nil {
			if err := readEvents(br, events); err != nil {
				return err
			}
			if err := w.read(br); err != nil {
				return err
			}
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return br.Close()
	}()
	if err != nil {
		return nil, nil, err
	}
	for _, ev := range events {
		ev.TaskID = task.ID
	}
	if evArgs == nil {
		// The events' body could not take the id in SQL: write them once
		// it is known, in a second round trip.
		if err = commitWithEvents(ctx, conn, events, w); err != nil {
			return nil, nil, err
		}
	}
	w.committed()
	return task, events, nil
}
