package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

const scheduleColumns = `name, first_seen_at, paused, paused_by, paused_at, resumed_at, handled_through, updated_at`

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func scanSchedule(row pgx.Row) (*backends.ScheduleState, error) {
	var st backends.ScheduleState
	if err := row.Scan(&st.Name, &st.FirstSeenAt, &st.Paused, &st.PausedBy, &st.PausedAt, &st.ResumedAt,
		&st.HandledThrough, &st.UpdatedAt); err != nil {
		return nil, err
	}
	st.FirstSeenAt, st.UpdatedAt = st.FirstSeenAt.UTC(), st.UpdatedAt.UTC()
	st.PausedAt, st.ResumedAt, st.HandledThrough = utcPtr(st.PausedAt), utcPtr(st.ResumedAt), utcPtr(st.HandledThrough)
	return &st, nil
}

// lockSchedule creates the schedule's row unless it exists, and reads it
// locked until the transaction ends: the writes of one schedule (firings,
// pause, resume) then run one after the other on every node.
func lockSchedule(ctx context.Context, tx querier, name string, now time.Time) (*backends.ScheduleState, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO schedules (name, first_seen_at, updated_at) VALUES ($1, $2, $2)
		ON CONFLICT (name) DO NOTHING`, name, ts(now)); err != nil {
		return nil, fmt.Errorf("noting schedule %q: %w", name, err)
	}
	return scanSchedule(tx.QueryRow(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE name = $1 FOR UPDATE`, name))
}

// EnsureSchedule implements backends.ScheduleStore.
func (s *Store) EnsureSchedule(ctx context.Context, name string, now time.Time) (_ *backends.ScheduleState, rerr error) {
	defer classifyErr(&rerr)
	var st *backends.ScheduleState
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO schedules (name, first_seen_at, updated_at) VALUES ($1, $2, $2)
			ON CONFLICT (name) DO NOTHING`, name, ts(now)); err != nil {
			return err
		}
		var err error
		st, err = scanSchedule(tx.QueryRow(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE name = $1`, name))
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
	rows, err := s.pool.Query(ctx, `SELECT `+scheduleColumns+` FROM schedules ORDER BY name`)
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
func (s *Store) SetSchedulePaused(ctx context.Context, p *backends.SetSchedulePausedParams) (_ *backends.ScheduleState, _ bool, rerr error) {
	defer classifyErr(&rerr)
	var (
		st      *backends.ScheduleState
		changed bool
	)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		cur, err := lockSchedule(ctx, tx, p.Name, p.Now)
		if err != nil {
			return err
		}
		st, changed = cur, cur.Paused != p.Paused
		if !changed {
			return nil
		}
		if p.Paused {
			st, err = scanSchedule(tx.QueryRow(ctx, `UPDATE schedules SET paused = true, paused_by = $2, paused_at = $3, updated_at = $3
				WHERE name = $1 RETURNING `+scheduleColumns, p.Name, p.Actor, ts(p.Now)))
		} else {
			st, err = scanSchedule(tx.QueryRow(ctx, `UPDATE schedules SET paused = false, resumed_at = $2, updated_at = $2
				WHERE name = $1 RETURNING `+scheduleColumns, p.Name, ts(p.Now)))
		}
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("pausing or resuming schedule %q: %w", p.Name, err)
	}
	return st, changed, nil
}

const firingColumns = `schedule, kind, fire_at, outcome, task_id, actor, created_at`

func scanFiring(row pgx.Row) (*backends.ScheduleFiring, error) {
	var (
		f      backends.ScheduleFiring
		taskID *int64
	)
	if err := row.Scan(&f.Schedule, &f.Kind, &f.At, &f.Outcome, &taskID, &f.Actor, &f.CreatedAt); err != nil {
		return nil, err
	}
	f.At, f.CreatedAt = f.At.UTC(), f.CreatedAt.UTC()
	if taskID != nil {
		f.TaskID = *taskID
	}
	return &f, nil
}

// FireSchedule implements backends.ScheduleStore. The schedule's row is
// locked first, so two nodes firing the same instant run one after the
// other and the second finds the first's firing; the firing's primary key
// stands behind that. The lock also makes the handled_through read here
// the latest committed (backends.ErrFiringHandled says why that matters).
func (s *Store) FireSchedule(ctx context.Context, p *backends.FireScheduleParams) (_ *backends.ScheduleFiring, _ bool, rerr error) {
	defer classifyErr(&rerr)
	var (
		firing  *backends.ScheduleFiring
		created bool
		events  []*backends.Event
		w       *wake
	)
	at := ts(p.At)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		firing, created, events, w = nil, false, nil, nil
		now := ts(p.Task.Now)
		st, err := lockSchedule(ctx, tx, p.Schedule, now)
		if err != nil {
			return err
		}
		f, err := scanFiring(tx.QueryRow(ctx, `SELECT `+firingColumns+` FROM schedule_firings
			WHERE schedule = $1 AND kind = $2 AND fire_at = $3`, p.Schedule, string(p.Kind), at))
		switch {
		case err == nil:
			firing = f
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		// Not recorded: deleted, or never fired. An instant the schedule
		// handled already must not fire now (backends.ErrFiringHandled).
		if p.Kind == backends.FiringScheduled && st.HandledThrough != nil && !at.After(*st.HandledThrough) {
			return backends.ErrFiringHandled
		}
		outcome := backends.FiringCreated
		if p.SkipIfRunning {
			var running bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schedule_firings f JOIN tasks t ON t.id = f.task_id
				WHERE f.schedule = $1 AND t.state NOT IN ('complete', 'cancelled', 'resolved_manually'))`,
				p.Schedule).Scan(&running); err != nil {
				return fmt.Errorf("looking for unfinished tasks: %w", err)
			}
			if running {
				outcome = backends.FiringSkipped
			}
		}
		var taskID *int64
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
			taskID = &task.ID
		}
		if firing, err = scanFiring(tx.QueryRow(ctx, `INSERT INTO schedule_firings (`+firingColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+firingColumns,
			p.Schedule, string(p.Kind), at, string(outcome), taskID, p.Actor, now)); err != nil {
			return fmt.Errorf("recording the firing: %w", err)
		}
		if p.Kind == backends.FiringScheduled {
			if err := advance(ctx, tx, p.Schedule, at, now); err != nil {
				return err
			}
		}
		created = true
		w = s.wakes.note(events, p.Task.Now)
		return w.exec(ctx, tx)
	})
	if err != nil {
		return nil, false, fmt.Errorf("firing schedule %q at %s: %w", p.Schedule, p.At.Format(time.RFC3339Nano), err)
	}
	w.committed()
	sinkEvents(ctx, events)
	return firing, created, nil
}

func advance(ctx context.Context, tx querier, name string, through, now time.Time) error {
	if _, err := tx.Exec(ctx, `UPDATE schedules SET handled_through = $2, updated_at = $3
		WHERE name = $1 AND (handled_through IS NULL OR handled_through < $2)`, name, ts(through), ts(now)); err != nil {
		return fmt.Errorf("advancing schedule %q: %w", name, err)
	}
	return nil
}

// SkipScheduleThrough implements backends.ScheduleStore.
func (s *Store) SkipScheduleThrough(ctx context.Context, name string, through, now time.Time) (rerr error) {
	defer classifyErr(&rerr)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := lockSchedule(ctx, tx, name, now); err != nil {
			return err
		}
		return advance(ctx, tx, name, through, now)
	})
	if err != nil {
		return fmt.Errorf("skipping firings of schedule %q: %w", name, err)
	}
	return nil
}

// ScheduleFirings implements backends.ScheduleStore.
func (s *Store) ScheduleFirings(ctx context.Context, name string, limit int) (_ []*backends.ScheduleFiring, rerr error) {
	defer classifyErr(&rerr)
	q := `SELECT ` + firingColumns + ` FROM schedule_firings WHERE schedule = $1 ORDER BY fire_at DESC, kind`
	args := []any{name}
	if limit > 0 {
		q += ` LIMIT $2`
		args = append(args, limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
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
	rows, err := s.pool.Query(ctx, `SELECT t.id FROM schedule_firings f JOIN tasks t ON t.id = f.task_id
		WHERE f.schedule = $1 AND f.fire_at < $2 AND t.state NOT IN ('complete', 'cancelled', 'resolved_manually')
		ORDER BY t.id`, name, ts(before))
	if err != nil {
		return nil, fmt.Errorf("listing unfinished tasks of schedule %q: %w", name, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("listing unfinished tasks of schedule %q: %w", name, err)
	}
	return ids, nil
}

// DeleteScheduleFirings implements backends.ScheduleStore. The oldest are
// found through schedule_firings_created, each schedule's last firing
// through schedule_firings_recent, and each candidate's task by its id (a
// scalar subquery rather than NOT EXISTS: with nearly every task finished,
// the planner may otherwise read the whole tasks table for the few
// unfinished ones, every batch). No lock is needed against firings being
// made: a new firing only raises its schedule's greatest At, and whether an
// instant may fire is decided by handled_through, not by these rows.
func (s *Store) DeleteScheduleFirings(ctx context.Context, createdBefore time.Time, limit int) (_ int, rerr error) {
	defer classifyErr(&rerr)
	if limit <= 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM schedule_firings WHERE (schedule, kind, fire_at) IN (
			SELECT f.schedule, f.kind, f.fire_at FROM schedule_firings f
			WHERE f.created_at < $1
				AND f.fire_at < (SELECT max(l.fire_at) FROM schedule_firings l WHERE l.schedule = f.schedule)
				AND coalesce((SELECT t.state IN ('complete', 'cancelled', 'resolved_manually')
					FROM tasks t WHERE t.id = f.task_id), true)
			ORDER BY f.created_at LIMIT $2)`, ts(createdBefore), limit)
	if err != nil {
		return 0, fmt.Errorf("deleting old schedule firings: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
