package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskerd/taskerd/backends"
)

// The event log (migrations/0009_events.sql, one row per run of a task's
// events since 0010_event_runs.sql: see backends/eventrows.go). Every write
// stores its events with appendEventsSQL as the last statement before its
// COMMIT: the numbers come from the one row of event_seq, whose lock the
// UPDATE holds until the transaction ends. The next writer waits for that
// commit before it numbers its own, so numbering order is commit order and
// a reader that sees seq n sees everything below it. Being last keeps the
// lock's window to the statement and the commit: the writers of the whole
// database pass through it one at a time.

// appendEventsSQL numbers $1 events after event_seq.last and inserts them
// as runs (backends.EventRuns), in one statement: per run, $2 and $3 the
// offsets of its first and last event within the write (from 1), $4 its
// task, $5 its namespace, $6 its instant, $7 its body (parallel arrays, in
// order). It returns the last number taken: the events are last-$1+1 ..
// last.
const appendEventsSQL = `WITH n AS (
	UPDATE event_seq SET last = last + $1 RETURNING last
), ins AS (
	INSERT INTO events (seq, last_seq, task_id, namespace, created_at, body)
	SELECT n.last - $1 + u.first_off, n.last - $1 + u.last_off, u.task_id, u.namespace, u.created_at, u.body
	  FROM n, unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::timestamptz[], $7::text[])
		AS u(first_off, last_off, task_id, namespace, created_at, body)
)
SELECT last FROM n`

// eventArgs are appendEventsSQL's arguments for events (none when there
// are none: nothing to write, and no lock to take).
func eventArgs(events []*backends.Event) ([]any, error) {
	if len(events) == 0 {
		return nil, nil
	}
	for _, ev := range events {
		// In UTC at microseconds, as the store returns every time: the
		// caller's sink and a reader of the log get the same event.
		ev.Time = ts(ev.Time)
	}
	runs := backends.EventRuns(events)
	var (
		firsts, lasts, taskIDs = make([]int64, len(runs)), make([]int64, len(runs)), make([]int64, len(runs))
		namespaces, bodies     = make([]string, len(runs)), make([]string, len(runs))
		times                  = make([]time.Time, len(runs))
	)
	var off int64
	for i, run := range runs {
		b, err := backends.EncodeEventRun(run)
		if err != nil {
			return nil, err
		}
		firsts[i], lasts[i] = off+1, off+int64(len(run))
		off += int64(len(run))
		taskIDs[i], namespaces[i], times[i], bodies[i] = run[0].TaskID, run[0].Namespace, run[0].Time, string(b)
	}
	return []any{len(events), firsts, lasts, taskIDs, namespaces, times, bodies}, nil
}

// numberEvents sets the Seq of events from the last number their
// appendEventsSQL took.
func numberEvents(events []*backends.Event, last int64) {
	first := last - int64(len(events)) + 1
	for i, ev := range events {
		ev.Seq = first + int64(i)
	}
}

// appendEvents stores events in tx's transaction and numbers them. Call it
// last, right before the COMMIT (see the top of this file).
func appendEvents(ctx context.Context, tx querier, events []*backends.Event) error {
	args, err := eventArgs(events)
	if err != nil || args == nil {
		return err
	}
	var last int64
	if err := tx.QueryRow(ctx, appendEventsSQL, args...).Scan(&last); err != nil {
		return fmt.Errorf("writing %d events: %w", len(events), err)
	}
	numberEvents(events, last)
	return nil
}

// sinkEvents hands a committed write's events to the ctx's sink, if any.
func sinkEvents(ctx context.Context, events []*backends.Event) {
	if sink := backends.EventSinkFrom(ctx); sink != nil && len(events) > 0 {
		sink(events)
	}
}

// errorStepNamesSQL names the steps in error of task $1, in position order.
const errorStepNamesSQL = `SELECT coalesce(array_agg(name ORDER BY position), '{}') FROM steps
	WHERE task_id = $1 AND state = 'error'`

func errorStepNames(ctx context.Context, q querier, taskID int64) ([]string, error) {
	var names []string
	if err := q.QueryRow(ctx, errorStepNamesSQL, taskID).Scan(&names); err != nil {
		return nil, fmt.Errorf("naming the steps in error of task %d: %w", taskID, err)
	}
	return names, nil
}

// ListEvents implements backends.EventStore. The row holding the first
// event after q.After is the one with the greatest seq at or below it (runs
// do not overlap), so the rows to read start there, by the primary key, and
// the ones whose last event is at or below q.After (that row, when After is
// its last) are left out: every row read holds at least one wanted event,
// and a limit on rows is enough. Each filter that is set adds its
// condition, so that each combination has a plan of its own: the primary
// key for a reader of everything or of namespaces (a filter on the rows the
// range selects), events_task for a task's.
func (s *Store) ListEvents(ctx context.Context, q *backends.EventQuery) (_ []*backends.Event, rerr error) {
	defer classifyErr(&rerr)
	sql, args := listEventsSQL(q)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	defer rows.Close()
	events := []*backends.Event{}
	for rows.Next() {
		var r backends.EventRow
		if err := rows.Scan(&r.First, &r.TaskID, &r.Namespace, &r.Time, &r.Body); err != nil {
			return nil, fmt.Errorf("listing events: %w", err)
		}
		r.Time = ts(r.Time)
		if events, err = backends.AppendEventRows(events, q, r); err != nil {
			return nil, fmt.Errorf("listing events: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	return events, nil
}

// listEventsSQL is ListEvents' statement for q, and its arguments.
func listEventsSQL(q *backends.EventQuery) (string, []any) {
	sql := `SELECT seq, task_id, namespace, created_at, body FROM events
	WHERE seq >= coalesce((SELECT max(seq) FROM events WHERE seq <= $1), 0) AND last_seq > $1`
	args := []any{q.After, q.LimitOrDefault()}
	if q.TaskID != 0 {
		args = append(args, q.TaskID)
		sql += fmt.Sprintf(` AND task_id = $%d`, len(args))
	}
	if len(q.Namespaces) > 0 {
		args = append(args, q.Namespaces)
		sql += fmt.Sprintf(` AND namespace = ANY ($%d::text[])`, len(args))
	}
	return sql + ` ORDER BY seq LIMIT $2`, args
}

// LastEventSeq implements backends.EventStore: the counter, which is the
// highest number taken by a committed write (a plain read: it does not wait
// for a writer holding the counter's lock).
func (s *Store) LastEventSeq(ctx context.Context) (_ int64, rerr error) {
	defer classifyErr(&rerr)
	var last int64
	if err := s.pool.QueryRow(ctx, `SELECT last FROM event_seq`).Scan(&last); err != nil {
		return 0, fmt.Errorf("reading the last event number: %w", err)
	}
	return last, nil
}

const cursorColumns = `name, seq, coalesce(owner, ''), lease_until, updated_at`

func scanCursor(r pgx.Row) (*backends.EventCursor, error) {
	c := &backends.EventCursor{}
	if err := r.Scan(&c.Name, &c.Seq, &c.Owner, &c.LeaseUntil, &c.UpdatedAt); err != nil {
		return nil, err
	}
	return c, nil
}

// acquireCursorSQL creates cursor $1 at $2 leased to $3 until $4, or takes
// its lease when it is free, expired at $5 (lease_until <= now, as a
// step's) or already $3's. ON CONFLICT locks the row and judges the lease
// as it stands once the lock is held, so of two nodes asking at once one
// gets it. No row: another owner holds a live lease. $5 is also the write
// instant (updated_at).
const acquireCursorSQL = `INSERT INTO event_cursors AS c (name, seq, owner, lease_until, updated_at)
	VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until,
		updated_at = excluded.updated_at
	 WHERE c.owner IS NULL OR c.lease_until IS NULL OR c.owner = excluded.owner OR c.lease_until <= $5
	RETURNING ` + cursorColumns

// AcquireCursor implements backends.EventStore.
func (s *Store) AcquireCursor(ctx context.Context, p *backends.AcquireCursorParams) (_ *backends.EventCursor, _ bool, rerr error) {
	defer classifyErr(&rerr)
	if p.Name == "" || p.Owner == "" {
		return nil, false, fmt.Errorf("acquiring event cursor %q for %q: a cursor needs a name and an owner", p.Name, p.Owner)
	}
	c, err := scanCursor(s.pool.QueryRow(ctx, acquireCursorSQL, p.Name, p.Start, p.Owner, ts(p.Now.Add(p.Lease)), ts(p.Now)))
	if err == nil {
		return c, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, false, fmt.Errorf("acquiring event cursor %q for %s: %w", p.Name, p.Owner, err)
	}
	// Held by another: the cursor as it stands (a statement of its own, to
	// see the holder's row even if it committed after the INSERT began).
	c, err = scanCursor(s.pool.QueryRow(ctx, `SELECT `+cursorColumns+` FROM event_cursors WHERE name = $1`, p.Name))
	if err != nil {
		return nil, false, fmt.Errorf("acquiring event cursor %q for %s: %w", p.Name, p.Owner, err)
	}
	return c, false, nil
}

// AdvanceCursor implements backends.EventStore: one UPDATE fenced by the
// owner and an unexpired lease.
func (s *Store) AdvanceCursor(ctx context.Context, name, owner string, seq int64, now time.Time) (rerr error) {
	defer classifyErr(&rerr)
	tag, err := s.pool.Exec(ctx, `UPDATE event_cursors SET seq = $1, updated_at = $2
		WHERE name = $3 AND owner = $4 AND lease_until > $2`, seq, ts(now), name, owner)
	if err != nil {
		return fmt.Errorf("advancing event cursor %q to %d: %w", name, seq, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var holder string
	err = s.pool.QueryRow(ctx, `SELECT coalesce(owner, '') FROM event_cursors WHERE name = $1`, name).Scan(&holder)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("advancing event cursor %q: %w", name, backends.ErrNotFound)
	case err != nil:
		return fmt.Errorf("advancing event cursor %q to %d: %w", name, seq, err)
	}
	return fmt.Errorf("advancing event cursor %q to %d for %s: %w", name, seq, owner, backends.ErrLeaseLost)
}

// ResetCursor implements backends.EventStore.
func (s *Store) ResetCursor(ctx context.Context, name string, seq int64, now time.Time) (rerr error) {
	defer classifyErr(&rerr)
	if name == "" {
		return errors.New("resetting an event cursor: a cursor needs a name")
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO event_cursors (name, seq, owner, lease_until, updated_at)
		VALUES ($1, $2, NULL, NULL, $3)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, owner = NULL, lease_until = NULL,
			updated_at = excluded.updated_at`, name, seq, ts(now)); err != nil {
		return fmt.Errorf("resetting event cursor %q to %d: %w", name, seq, err)
	}
	return nil
}

// ListCursors implements backends.EventStore.
func (s *Store) ListCursors(ctx context.Context) (_ []*backends.EventCursor, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.pool.Query(ctx, `SELECT `+cursorColumns+` FROM event_cursors ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing event cursors: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*backends.EventCursor, error) { return scanCursor(r) })
	if err != nil {
		return nil, fmt.Errorf("listing event cursors: %w", err)
	}
	if cs == nil {
		cs = []*backends.EventCursor{}
	}
	return cs, nil
}

// AddDeadLetter implements backends.EventStore. One letter per cursor and
// event: the same event given up on again by the same cursor (after a
// replay) replaces its letter, as on SQLite.
func (s *Store) AddDeadLetter(ctx context.Context, d *backends.DeadLetter) (rerr error) {
	defer classifyErr(&rerr)
	if d.Cursor == "" {
		return errors.New("adding a dead letter: it needs a cursor")
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO event_dead_letters (cursor, seq, attempts, last_error, created_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (cursor, seq) DO UPDATE SET attempts = excluded.attempts, last_error = excluded.last_error,
			created_at = excluded.created_at`,
		d.Cursor, d.Seq, d.Attempts, d.LastError, ts(d.CreatedAt)); err != nil {
		return fmt.Errorf("adding a dead letter of event cursor %q for event %d: %w", d.Cursor, d.Seq, err)
	}
	return nil
}

// ListDeadLetters implements backends.EventStore.
func (s *Store) ListDeadLetters(ctx context.Context, cursor string, limit int) (_ []*backends.DeadLetter, rerr error) {
	defer classifyErr(&rerr)
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	rows, err := s.pool.Query(ctx, `SELECT cursor, seq, attempts, last_error, created_at FROM event_dead_letters
		WHERE cursor = $1 ORDER BY seq LIMIT $2`, cursor, lim)
	if err != nil {
		return nil, fmt.Errorf("listing the dead letters of event cursor %q: %w", cursor, err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*backends.DeadLetter, error) {
		d := &backends.DeadLetter{}
		return d, r.Scan(&d.Cursor, &d.Seq, &d.Attempts, &d.LastError, &d.CreatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("listing the dead letters of event cursor %q: %w", cursor, err)
	}
	if ds == nil {
		ds = []*backends.DeadLetter{}
	}
	return ds, nil
}

// queueEvents adds appendEventsSQL for events to a pipeline, unless there
// are none; readEvents then reads its answer (in its turn) and numbers
// them. The pipeline's COMMIT must follow at once.
func queueEvents(b *pgx.Batch, events []*backends.Event) error {
	args, err := eventArgs(events)
	if err != nil || args == nil {
		return err
	}
	b.Queue(appendEventsSQL, args...)
	return nil
}

func readEvents(br pgx.BatchResults, events []*backends.Event) error {
	if len(events) == 0 {
		return nil
	}
	var last int64
	if err := br.QueryRow().Scan(&last); err != nil {
		return fmt.Errorf("writing %d events: %w", len(events), err)
	}
	numberEvents(events, last)
	return nil
}

// commitWithEvents ends the transaction open on conn: events, the wake-up
// notification w (nil for none), then COMMIT, in one round trip.
func commitWithEvents(ctx context.Context, conn *pgxpool.Conn, events []*backends.Event, w *wake) error {
	b := &pgx.Batch{}
	if err := queueEvents(b, events); err != nil {
		return err
	}
	w.queue(b)
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	defer br.Close()
	if err := readEvents(br, events); err != nil {
		return err
	}
	if err := w.read(br); err != nil {
		return err
	}
	if _, err := br.Exec(); err != nil {
		return err
	}
	return br.Close()
}
