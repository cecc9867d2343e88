package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// The event log (backends/events.go), one row per run of a task's events
// (backends/eventrows.go, migration 0008): each write appends the events of
// its changes in its own transaction (appendEvents), and hands them to its
// ctx's sink once Store.write says the commit that holds them succeeded
// (notify). There is one writer, so numbering in commit order is counting:
// the write transaction reads event_seq at its first event, counts on in
// memory (eventSeq) and stores the count once, before its COMMIT. An
// operation of a group commit rolled back to its savepoint gives its
// numbers back (runGroup restores the count), so the next one reuses them
// and the log has no gaps.

// eventSeq is a write transaction's count of event numbers.
type eventSeq struct {
	loaded bool  // last was read from event_seq
	last   int64 // the last number handed out
	stored int64 // what event_seq holds
}

const (
	readEventSeqSQL  = `SELECT last FROM event_seq`
	writeEventSeqSQL = `UPDATE event_seq SET last = ?`
)

// take hands out the next n numbers and returns the first.
func (c *eventSeq) take(ctx context.Context, tx querier, n int) (int64, error) {
	if !c.loaded {
		if err := tx.QueryRowContext(ctx, readEventSeqSQL).Scan(&c.last); err != nil {
			return 0, fmt.Errorf("reading the last event's seq: %w", err)
		}
		c.loaded, c.stored = true, c.last
	}
	first := c.last + 1
	c.last += int64(n)
	return first, nil
}

// save stores the count, if the transaction handed numbers out; the last
// statement before COMMIT.
func (c *eventSeq) save(ctx context.Context, tx querier) error {
	if !c.loaded || c.last == c.stored {
		return nil
	}
	if _, err := tx.ExecContext(ctx, writeEventSeqSQL, c.last); err != nil {
		return fmt.Errorf("storing the last event's seq: %w", err)
	}
	c.stored = c.last
	return nil
}

// rowsPerInsert bounds the rows (runs) of one INSERT: a write's events are
// stored by one statement (more only for a large claim or recovery), with
// plain parameters, not a JSON array, which SQLite would have to parse
// again.
const rowsPerInsert = 8

// insertEventsSQL[n] inserts n rows; each n is one cached statement.
var insertEventsSQL = func() []string {
	out := make([]string, rowsPerInsert+1)
	for n := 1; n <= rowsPerInsert; n++ {
		out[n] = `INSERT INTO events (seq, last_seq, task_id, namespace, created_at, body) VALUES (?, ?, ?, ?, ?, ?)` +
			strings.Repeat(`, (?, ?, ?, ?, ?, ?)`, n-1)
	}
	return out
}()

// appendEvents writes events in order, in tx's write transaction, and sets
// their Seq. Their Time is stored at the store's precision (microseconds,
// UTC), so that what the sink receives is what ListEvents returns.
func appendEvents(ctx context.Context, tx querier, events []*backends.Event) error {
	if len(events) == 0 {
		return nil
	}
	wtx, ok := tx.(cachedTx)
	if !ok || wtx.seq == nil {
		return errors.New("sqlite: events are written only in a write transaction")
	}
	first, err := wtx.seq.take(ctx, tx, len(events))
	if err != nil {
		return err
	}
	for i, ev := range events {
		ev.Time, ev.Seq = fromMicros(micros(ev.Time)), first+int64(i)
	}
	runs := backends.EventRuns(events)
	for len(runs) > 0 {
		n := min(len(runs), rowsPerInsert)
		if err := insertRuns(ctx, tx, runs[:n]); err != nil {
			return err
		}
		runs = runs[n:]
	}
	return nil
}

// insertRuns writes at most rowsPerInsert runs, already numbered, in one
// statement.
func insertRuns(ctx context.Context, tx querier, runs [][]*backends.Event) error {
	args := make([]any, 0, 6*len(runs))
	for _, run := range runs {
		body, err := backends.EncodeEventRun(run)
		if err != nil {
			return err
		}
		first, last := run[0], run[len(run)-1]
		args = append(args, first.Seq, last.Seq, first.TaskID, first.Namespace, micros(first.Time), string(body))
	}
	if _, err := tx.ExecContext(ctx, insertEventsSQL[len(runs)], args...); err != nil {
		return fmt.Errorf("writing the events of %d tasks: %w", len(runs), err)
	}
	return nil
}

// notify hands a committed write's events to ctx's sink, if any.
func notify(ctx context.Context, events []*backends.Event) {
	if sink := backends.EventSinkFrom(ctx); sink != nil && len(events) > 0 {
		sink(events)
	}
}

// errorStepNames names the task's steps in error, in position order.
func errorStepNames(ctx context.Context, q querier, taskID int64) ([]string, error) {
	rows, err := q.QueryContext(ctx, errorStepNamesSQL, taskID)
	if err != nil {
		return nil, fmt.Errorf("naming the steps in error of task %d: %w", taskID, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

const errorStepNamesSQL = `SELECT name FROM steps WHERE task_id = ? AND state = 'error' ORDER BY position`

func (t opTx) ErrorStepNames(ctx context.Context, taskID int64) ([]string, error) {
	return errorStepNames(ctx, t.q, taskID)
}

func (t opTx) AppendEvents(ctx context.Context, events []*backends.Event) error {
	return appendEvents(ctx, t.q, events)
}

// ListEvents implements backends.EventStore. Each combination of filters
// has its own statement text, so that each is planned for its index
// (events_task for a task's, the primary key otherwise); namespaces are one
// JSON array parameter.
func (s *Store) ListEvents(ctx context.Context, q *backends.EventQuery) ([]*backends.Event, error) {
	query, args, err := listEventsSQL(q)
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	out := []*backends.Event{}
	err = s.read(ctx, func(tx querier) error {
		return queryEventRows(ctx, tx, func(r backends.EventRow) (err error) {
			out, err = backends.AppendEventRows(out, q, r)
			return err
		}, query, args...)
	})
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	return out, nil
}

// listEventsSQL is ListEvents' statement and its arguments: the rows that
// hold an event after q.After (the one holding After+1 may start before
// it: it is the row with the greatest first seq up to After), at most
// limit rows, since each holds at least one wanted event.
func listEventsSQL(q *backends.EventQuery) (string, []any, error) {
	query := `SELECT seq, task_id, namespace, created_at, body FROM events
		WHERE seq >= coalesce((SELECT max(seq) FROM events WHERE seq <= ?1), 0) AND last_seq > ?1`
	args := []any{q.After}
	if q.TaskID != 0 {
		query += ` AND task_id = ?2`
		args = append(args, q.TaskID)
	}
	if len(q.Namespaces) > 0 {
		ns, err := json.Marshal(q.Namespaces)
		if err != nil {
			return "", nil, err
		}
		query += fmt.Sprintf(` AND namespace IN (SELECT value FROM json_each(?%d))`, len(args)+1)
		args = append(args, string(ns))
	}
	return query + fmt.Sprintf(` ORDER BY seq LIMIT ?%d`, len(args)+1), append(args, q.LimitOrDefault()), nil
}

// LastEventSeq implements backends.EventStore.
func (s *Store) LastEventSeq(ctx context.Context) (_ int64, rerr error) {
	defer classifyErr(&rerr)
	var seq int64
	if err := s.rq().QueryRowContext(ctx, readEventSeqSQL).Scan(&seq); err != nil {
		return 0, fmt.Errorf("reading the last event's seq: %w", err)
	}
	return seq, nil
}

const cursorColumns = `name, seq, owner, lease_until, updated_at`

func scanCursor(sc scanner) (*backends.EventCursor, error) {
	var (
		c       backends.EventCursor
		until   sql.NullInt64
		updated int64
	)
	if err := sc.Scan(&c.Name, &c.Seq, &c.Owner, &until, &updated); err != nil {
		return nil, err
	}
	c.LeaseUntil, c.UpdatedAt = nullTime(until), fromMicros(updated)
	return &c, nil
}

// AcquireCursor implements backends.EventStore. A lease is live while
// Now < LeaseUntil.
func (s *Store) AcquireCursor(ctx context.Context, p *backends.AcquireCursorParams) (*backends.EventCursor, bool, error) {
	if p.Name == "" || p.Owner == "" {
		return nil, false, fmt.Errorf("acquiring event cursor %q for %q: a cursor needs a name and an owner", p.Name, p.Owner)
	}
	var (
		c  *backends.EventCursor
		ok bool
	)
	now := micros(p.Now)
	err := s.write(ctx, func(tx querier) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO event_cursors (name, seq, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO NOTHING`, p.Name, p.Start, now); err != nil {
			return err
		}
		// Taken unless another owner's lease is live; the row as it is
		// afterwards either way.
		row := tx.QueryRowContext(ctx, `UPDATE event_cursors SET owner = ?2, lease_until = ?3, updated_at = ?4
			WHERE name = ?1 AND (owner = ?2 OR owner = '' OR lease_until IS NULL OR lease_until <= ?4)
			RETURNING `+cursorColumns, p.Name, p.Owner, micros(p.Now.Add(p.Lease)), now)
		var err error
		c, err = scanCursor(row)
		if err == nil {
			ok = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		c, err = scanCursor(tx.QueryRowContext(ctx, `SELECT `+cursorColumns+` FROM event_cursors WHERE name = ?`, p.Name))
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("acquiring event cursor %q for %s: %w", p.Name, p.Owner, err)
	}
	return c, ok, nil
}

// AdvanceCursor implements backends.EventStore.
func (s *Store) AdvanceCursor(ctx context.Context, name, owner string, seq int64, now time.Time) error {
	err := s.write(ctx, func(tx querier) error {
		res, err := tx.ExecContext(ctx, `UPDATE event_cursors SET seq = ?, updated_at = ?
			WHERE name = ? AND owner = ? AND owner <> '' AND lease_until > ?`, seq, micros(now), name, owner, micros(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var holder string
		err = tx.QueryRowContext(ctx, `SELECT owner FROM event_cursors WHERE name = ?`, name).Scan(&holder)
		if errors.Is(err, sql.ErrNoRows) {
			return backends.ErrNotFound
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("%s holds no live lease on it (holder %q): %w", owner, holder, backends.ErrLeaseLost)
	})
	if err != nil {
		return fmt.Errorf("advancing event cursor %q to %d: %w", name, seq, err)
	}
	return nil
}

// ResetCursor implements backends.EventStore.
func (s *Store) ResetCursor(ctx context.Context, name string, seq int64, now time.Time) error {
	if name == "" {
		return errors.New("resetting an event cursor: a cursor needs a name")
	}
	err := s.write(ctx, func(tx querier) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO event_cursors (name, seq, owner, lease_until, updated_at)
			VALUES (?1, ?2, '', NULL, ?3)
			ON CONFLICT (name) DO UPDATE SET seq = ?2, owner = '', lease_until = NULL, updated_at = ?3`,
			name, seq, micros(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("resetting event cursor %q to %d: %w", name, seq, err)
	}
	return nil
}

// ListCursors implements backends.EventStore.
func (s *Store) ListCursors(ctx context.Context) ([]*backends.EventCursor, error) {
	out := []*backends.EventCursor{}
	err := s.read(ctx, func(tx querier) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+cursorColumns+` FROM event_cursors ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			c, err := scanCursor(rows)
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing event cursors: %w", err)
	}
	return out, nil
}

// AddDeadLetter implements backends.EventStore. The same event given up on
// again by the same cursor (after a replay) replaces its dead letter.
func (s *Store) AddDeadLetter(ctx context.Context, d *backends.DeadLetter) error {
	if d.Cursor == "" {
		return errors.New("adding a dead letter: it needs a cursor")
	}
	err := s.write(ctx, func(tx querier) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO event_dead_letters (cursor, seq, attempts, last_error, created_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (cursor, seq) DO UPDATE SET attempts = excluded.attempts, last_error = excluded.last_error,
				created_at = excluded.created_at`,
			d.Cursor, d.Seq, d.Attempts, d.LastError, micros(d.CreatedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("adding the dead letter of event %d for cursor %q: %w", d.Seq, d.Cursor, err)
	}
	return nil
}

// ListDeadLetters implements backends.EventStore.
func (s *Store) ListDeadLetters(ctx context.Context, cursor string, limit int) ([]*backends.DeadLetter, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	out := []*backends.DeadLetter{}
	err := s.read(ctx, func(tx querier) error {
		rows, err := tx.QueryContext(ctx, `SELECT cursor, seq, attempts, last_error, created_at
			FROM event_dead_letters WHERE cursor = ? ORDER BY seq LIMIT ?`, cursor, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				d       backends.DeadLetter
				created int64
			)
			if err := rows.Scan(&d.Cursor, &d.Seq, &d.Attempts, &d.LastError, &created); err != nil {
				return err
			}
			d.CreatedAt = fromMicros(created)
			out = append(out, &d)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing the dead letters of cursor %q: %w", cursor, err)
	}
	return out, nil
}
