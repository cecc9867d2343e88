package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

const scheduleColumns = `name, first_seen_at, paused, paused_by, paused_at, resumed_at, handled_through, updated_at`

func scanSchedule(sc scanner) (*backends.ScheduleState, error) {
	var (
		st                           backends.ScheduleState
		first, updated               int64
		paused                       int
		pausedAt, resumedAt, handled sql.NullInt64
	)
	if err := sc.Scan(&st.Name, &first, &paused, &st.PausedBy, &pausedAt, &resumedAt, &handled, &updated); err != nil {
		return nil, err
	}
	st.FirstSeenAt, st.UpdatedAt, st.Paused = fromMicros(first), fromMicros(updated), paused == 1
	st.PausedAt, st.ResumedAt, st.HandledThrough = nullTime(pausedAt), nullTime(resumedAt), nullTime(handled)
	return &st, nil
}

// ensureSchedule creates the schedule's row unless it exists, and reads it.
func ensureSchedule(ctx context.Context, tx querier, name string, now time.Time) (*backends.ScheduleState, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO schedules (name, first_seen_at, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO NOTHING`, name, micros(now), micros(now)); err != nil {
		return nil, fmt.Errorf("noting schedule %q: %w", name, err)
	}
	return scanSchedule(tx.QueryRowContext(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE name = ?`, name))
}

// EnsureSchedule implements backends.ScheduleStore.
func (s *Store) EnsureSchedule(ctx context.Context, name string, now time.Time) (*backends.ScheduleState, error) {
	var st *backends.ScheduleState
	err := s.write(ctx, func(tx querier) error {
		var err error
		st, err = ensureSchedule(ctx, tx, name, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", name, err)
	}
	return st, nil
}

// ScheduleStates implements backends.ScheduleStore.
func (s *Store) ScheduleStates(ctx context.Context) (_ []*backends.ScheduleState, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.rq().QueryContext(ctx, `SELECT `+scheduleColumns+` FROM schedules ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing schedules: %w", err)
	}
	defer rows.Close()
	var out []*backends.ScheduleState
	for rows.Next() {
		st, err := scanSchedule(rows)
		if err != nil {
			return nil, fmt.Errorf("listing schedules: %w", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing schedules: %w", err)
	}
	return out, nil
}

// SetSchedulePaused implements backends.ScheduleStore.
func (s *Store) SetSchedulePaused(ctx context.Context, p *backends.SetSchedulePausedParams) (*backends.ScheduleState, bool, error) {
	var (
		st      *backends.ScheduleState
		changed bool
	)
	err := s.write(ctx, func(tx querier) error {
		changed = false
		if _, err := ensureSchedule(ctx, tx, p.Name, p.Now); err != nil {
			return err
		}
		now := micros(p.Now)
		var (
			res sql.Result
			err error
		)
		if p.Paused {
			res, err = tx.ExecContext(ctx, `UPDATE schedules SET paused = 1, paused_by = ?, paused_at = ?, updated_at = ?
				WHERE name = ? AND paused = 0`, p.Actor, now, now, p.Name)
		} else {
			res, err = tx.ExecContext(ctx, `UPDATE schedules SET paused = 0, resumed_at = ?, updated_at = ?
				WHERE name = ? AND paused = 1`, now, now, p.Name)
		}
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		changed = n == 1
		st, err = scanSchedule(tx.QueryRowContext(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE name = ?`, p.Name))
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("pausing or resuming schedule %q: %w", p.Name, err)
	}
	return st, changed, nil
}

const firingColumns = `schedule, kind, fire_at, outcome, task_id, actor, created_at`

func scanFiring(sc scanner) (*backends.ScheduleFiring, error) {
	var (
		f             backends.ScheduleFiring
		at, createdAt int64
		taskID        sql.NullInt64
	)
	if err := sc.Scan(&f.Schedule, &f.Kind, &at, &f.Outcome, &taskID, &f.Actor, &createdAt); err != nil {
		return nil, err
	}
	f.At, f.CreatedAt, f.TaskID = fromMicros(at), fromMicros(createdAt), taskID.Int64
	return &f, nil
}

// FireSchedule implements backends.ScheduleStore. The writer runs one
// transaction at a time (BEGIN IMMEDIATE, also across processes sharing
// the file), so the look for an existing firing, the comparison with
// handled_through and the insert cannot interleave with another caller's
// (backends.ErrFiringHandled says why the comparison matters).
func (s *Store) FireSchedule(ctx context.Context, p *backends.FireScheduleParams) (*backends.ScheduleFiring, bool, error) {
	var (
		firing  *backends.ScheduleFiring
		created bool
		events  []*backends.Event
	)
	at := micros(p.At)
	err := s.write(ctx, func(tx querier) error {
		firing, created, events = nil, false, nil
		now := p.Task.Now
		st, err := ensureSchedule(ctx, tx, p.Schedule, now)
		if err != nil {
			return err
		}
		f, err := scanFiring(tx.QueryRowContext(ctx, `SELECT `+firingColumns+` FROM schedule_firings
			WHERE schedule = ? AND kind = ? AND fire_at = ?`, p.Schedule, string(p.Kind), at))
		switch {
		case err == nil:
			firing = f
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		// Not recorded: deleted, or never fired. An instant the schedule
		// handled already must not fire now (backends.ErrFiringHandled).
		if p.Kind == backends.FiringScheduled && st.HandledThrough != nil && at <= micros(*st.HandledThrough) {
			return backends.ErrFiringHandled
		}
		outcome := backends.FiringCreated
		if p.SkipIfRunning {
			var running int
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM schedule_firings f JOIN tasks t ON t.id = f.task_id
				WHERE f.schedule = ? AND t.state NOT IN ('complete', 'cancelled', 'resolved_manually'))`,
				p.Schedule).Scan(&running); err != nil {
				return fmt.Errorf("looking for unfinished tasks: %w", err)
			}
			if running == 1 {
				outcome = backends.FiringSkipped
			}
		}
		var taskID any
		if outcome == backends.FiringCreated {
			var task *backends.Task
			if p.Task.IdempotencyKey != "" {
				if task, err = byIdempotencyKey(ctx, tx, p.Task); err != nil {
					return err
				}
			}
			if task == nil {
				if task, events, err = createTaskTx(ctx, tx, p.Task); err != nil {
					return err
				}
			}
			taskID = task.ID
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schedule_firings (`+firingColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			p.Schedule, string(p.Kind), at, string(outcome), taskID, p.Actor, micros(now)); err != nil {
			return fmt.Errorf("recording the firing: %w", err)
		}
		if p.Kind == backends.FiringScheduled {
			if err := advance(ctx, tx, p.Schedule, at, now); err != nil {
				return err
			}
		}
		created = true
		firing, err = scanFiring(tx.QueryRowContext(ctx, `SELECT `+firingColumns+` FROM schedule_firings
			WHERE schedule = ? AND kind = ? AND fire_at = ?`, p.Schedule, string(p.Kind), at))
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("firing schedule %q at %s: %w", p.Schedule, p.At.Format(time.RFC3339Nano), err)
	}
	notify(ctx, events)
	return firing, created, nil
}

func advance(ctx context.Context, tx querier, name string, through int64, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE schedules SET handled_through = ?, updated_at = ?
		WHERE name = ? AND (handled_through IS NULL OR handled_through < ?)`, through, micros(now), name, through); err != nil {
		return fmt.Errorf("advancing schedule %q: %w", name, err)
	}
	return nil
}

// SkipScheduleThrough implements backends.ScheduleStore.
func (s *Store) SkipScheduleThrough(ctx context.Context, name string, through, now time.Time) error {
	err := s.write(ctx, func(tx querier) error {
		if _, err := ensureSchedule(ctx, tx, name, now); err != nil {
			return err
		}
		return advance(ctx, tx, name, micros(through), now)
	})
	if err != nil {
		return fmt.Errorf("skipping firings of schedule %q: %w", name, err)
	}
	return nil
}

// ScheduleFirings implements backends.ScheduleStore.
func (s *Store) ScheduleFirings(ctx context.Context, name string, limit int) (_ []*backends.ScheduleFiring, rerr error) {
	defer classifyErr(&rerr)
	q := `SELECT ` + firingColumns + ` FROM schedule_firings WHERE schedule = ? ORDER BY fire_at DESC, kind`
	args := []any{name}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.rq().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing firings of schedule %q: %w", name, err)
	}
	defer rows.Close()
	var out []*backends.ScheduleFiring
	for rows.Next() {
		f, err := scanFiring(rows)
		if err != nil {
			return nil, fmt.Errorf("listing firings of schedule %q: %w", name, err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing firings of schedule %q: %w", name, err)
	}
	return out, nil
}

// UnfinishedScheduleTasks implements backends.ScheduleStore.
func (s *Store) UnfinishedScheduleTasks(ctx context.Context, name string, before time.Time) (_ []int64, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.rq().QueryContext(ctx, `SELECT t.id FROM schedule_firings f JOIN tasks t ON t.id = f.task_id
		WHERE f.schedule = ? AND f.fire_at < ? AND t.state NOT IN ('complete', 'cancelled', 'resolved_manually')
		ORDER BY t.id`, name, micros(before))
	if err != nil {
		return nil, fmt.Errorf("listing unfinished tasks of schedule %q: %w", name, err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("listing unfinished tasks of schedule %q: %w", name, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing unfinished tasks of schedule %q: %w", name, err)
	}
	return ids, nil
}

// DeleteScheduleFirings implements backends.ScheduleStore. The oldest are
// found through schedule_firings_created, each schedule's last firing
// through schedule_firings_recent.
func (s *Store) DeleteScheduleFirings(ctx context.Context, createdBefore time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := s.write(ctx, func(tx querier) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM schedule_firings WHERE rowid IN (
				SELECT f.rowid FROM schedule_firings f
				WHERE f.created_at < ?
					AND f.fire_at < (SELECT max(l.fire_at) FROM schedule_firings l WHERE l.schedule = f.schedule)
					AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = f.task_id
						AND t.state NOT IN ('complete', 'cancelled', 'resolved_manually'))
				ORDER BY f.created_at LIMIT ?)`, micros(createdBefore), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("deleting old schedule firings: %w", err)
	}
	return int(n), nil
}
