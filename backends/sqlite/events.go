package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// The event log (backends/events.go): each write appends the events of its
// changes in its own transaction (appendEvents), and hands them to its
// ctx's sink once Store.write says the commit that holds them succeeded
// (notify). With one writer, AUTOINCREMENT numbers them in commit order
// without gaps: an operation rolled back to its savepoint takes its
// sqlite_sequence update with it, so the next one reuses its numbers.

// insertEventsSQL writes a run of events sharing one instant (?2) in one
// statement: ?1 is a JSON array of the events' JSON, each stored as its
// body, in array order, so the seqs of a run are consecutive.
const insertEventsSQL = `INSERT INTO events (type, task_id, step_id, namespace, created_at, body)
	SELECT value->>'type', value->>'task_id', value->>'step_id', coalesce(value->>'namespace', ''), ?2, value
	  FROM json_each(?1) ORDER BY key`

// appendEvents writes events in order and sets their Seq. Their Time is
// stored at the store's precision (microseconds, UTC), so that what the
// sink receives is what ListEvents returns.
func appendEvents(ctx context.Context, tx querier, events []*backends.Event) error {
	for start := 0; start < len(events); {
		end := start + 1
		for end < len(events) && events[end].Time.Equal(events[start].Time) {
			end++
		}
		if err := appendRun(ctx, tx, events[start:end]); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// appendRun writes events that share one instant.
func appendRun(ctx context.Context, tx querier, events []*backends.Event) error {
	at := micros(events[0].Time)
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, ev := range events {
		ev.Time, ev.Seq = fromMicros(at), 0
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("writing event %s of task %d: %w", ev.Type, ev.TaskID, err)
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	res, err := tx.ExecContext(ctx, insertEventsSQL, buf.String(), at)
	if err != nil {
		return fmt.Errorf("writing %d events: %w", len(events), err)
	}
	last, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("writing %d events: %w", len(events), err)
	}
	if n, err := res.RowsAffected(); err != nil || n != int64(len(events)) {
		return fmt.Errorf("writing %d events: %d written (%v)", len(events), n, err)
	}
	first := last - int64(len(events)) + 1
	for i, ev := range events {
		ev.Seq = first + int64(i)
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
// (events_task, events_namespace, or the seq order alone); namespaces are
// one JSON array parameter.
func (s *Store) ListEvents(ctx context.Context, q *backends.EventQuery) ([]*backends.Event, error) {
	query, args, err := listEventsSQL(q)
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	out := []*backends.Event{}
	err = s.read(ctx, func(tx querier) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				seq  int64
				body string
			)
			if err := rows.Scan(&seq, &body); err != nil {
				return err
			}
			ev := &backends.Event{}
			if err := json.Unmarshal([]byte(body), ev); err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			ev.Seq = seq
			out = append(out, ev)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	return out, nil
}

// listEventsSQL is ListEvents' statement and its arguments.
func listEventsSQL(q *backends.EventQuery) (string, []any, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = backends.DefaultEventLimit
	}
	query, args := `SELECT seq, body FROM events WHERE seq > ?`, []any{q.After}
	if q.TaskID != 0 {
		query += ` AND task_id = ?`
		args = append(args, q.TaskID)
	}
	if len(q.Namespaces) > 0 {
		ns, err := json.Marshal(q.Namespaces)
		if err != nil {
			return "", nil, err
		}
		query += ` AND namespace IN (SELECT value FROM json_each(?))`
		args = append(args, string(ns))
	}
	return query + ` ORDER BY seq LIMIT ?`, append(args, limit), nil
}

// LastEventSeq implements backends.EventStore.
func (s *Store) LastEventSeq(ctx context.Context) (_ int64, rerr error) {
	defer classifyErr(&rerr)
	var seq int64
	if err := s.rq().QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM events`).Scan(&seq); err != nil {
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
