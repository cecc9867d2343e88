package backends

import (
	"context"
	"errors"
	"time"
)

// ErrFiringHandled is FireSchedule's answer to a scheduled firing of an
// instant the schedule already handled (At at or before HandledThrough)
// and of which no record is left: it was fired and its record since
// deleted (DeleteScheduleFirings), or it was dropped or passed over
// (catch_up). Nothing is written.
//
// It is what makes deleting firings safe. The primary key (Schedule,
// Kind, At) stops a second firing of an instant only while the first's
// row exists; HandledThrough stops it for good: it only moves forward, it
// is moved to At in the transaction that records a scheduled firing, and
// FireSchedule compares the two inside its own transaction, after taking
// the schedule's row (PostgreSQL: SELECT .. FOR UPDATE; SQLite: the one
// writer, BEGIN IMMEDIATE). So once a firing of instant T committed,
// every later attempt at T, however slow the node that makes it or stale
// the state it computed T from, either finds T's row or finds
// HandledThrough >= T and is refused. Manual firings are not concerned:
// each trigger is a firing of its own instant (the time of the trigger),
// which nothing asks for again.
var ErrFiringHandled = errors.New("scheduled instant already handled")

// ScheduleStore keeps the cluster-wide state of the schedules of workflow
// files (docs/schedules.md): whether each is paused, which firings happened,
// and the task each created. The schedules themselves live in the files;
// a schedule's row is made the first time a node sees it.
type ScheduleStore interface {
	// EnsureSchedule returns the schedule's state, first creating it with
	// FirstSeenAt = now when no node has seen the schedule yet (nodes
	// starting together agree on one row).
	EnsureSchedule(ctx context.Context, name string, now time.Time) (*ScheduleState, error)
	// ScheduleStates returns the state of every schedule seen, by name.
	ScheduleStates(ctx context.Context) ([]*ScheduleState, error)
	// SetSchedulePaused pauses or resumes a schedule (creating its state as
	// EnsureSchedule would). Resuming sets ResumedAt = p.Now: firings due
	// while it was paused are not caught up. Pausing a paused schedule (or
	// resuming a running one) changes nothing and answers changed=false.
	SetSchedulePaused(ctx context.Context, p *SetSchedulePausedParams) (state *ScheduleState, changed bool, err error)
	// FireSchedule records one firing of a schedule and, unless it is
	// skipped, creates its task, in one transaction: a firing (Schedule,
	// Kind, At) happens at most once, whatever the number of callers, and
	// its record exists exactly when its task does. When the firing was
	// already recorded it is returned with created=false and nothing is
	// written. With p.SkipIfRunning, a firing while an earlier task of the
	// schedule is unfinished (not complete, cancelled or resolved_manually)
	// is recorded as skipped, without a task. A scheduled firing (not
	// manual) moves the schedule's HandledThrough to At when later.
	// A scheduled firing that is not recorded and whose At is at or
	// before HandledThrough is refused with ErrFiringHandled, nothing
	// written: see ErrFiringHandled for why.
	// p.Task.IdempotencyKey should be unique to the firing.
	FireSchedule(ctx context.Context, p *FireScheduleParams) (firing *ScheduleFiring, created bool, err error)
	// SkipScheduleThrough moves the schedule's HandledThrough to through
	// when later, without a firing: the scheduler dropped the firings due
	// until then (catch_up = "none").
	SkipScheduleThrough(ctx context.Context, name string, through, now time.Time) error
	// ScheduleFirings returns the schedule's most recent firings, newest
	// (by At) first, at most limit (all when 0).
	ScheduleFirings(ctx context.Context, name string, limit int) ([]*ScheduleFiring, error)
	// UnfinishedScheduleTasks returns the ids of the tasks of the
	// schedule's firings for instants before `before` that are not
	// complete, cancelled or resolved_manually, ascending. (A firing asked
	// for again must not find its own task among the previous ones.)
	UnfinishedScheduleTasks(ctx context.Context, name string, before time.Time) ([]int64, error)
	// DeleteScheduleFirings deletes up to limit firings recorded
	// (CreatedAt) before createdBefore, of any schedule, oldest first, in
	// one transaction, and says how many it deleted (none when limit <=
	// 0). Kept however old: the most recent firing of each schedule (the
	// greatest At, both kinds if they tie), which the API and the UI show
	// as its last firing; and a firing whose task is unfinished, through
	// which overlap = "skip" and "cancel_previous" find the schedule's
	// running tasks. The schedules' state is not touched: a deleted
	// scheduled firing cannot happen again (ErrFiringHandled).
	DeleteScheduleFirings(ctx context.Context, createdBefore time.Time, limit int) (int, error)
}

// ScheduleState is the database's part of a schedule.
type ScheduleState struct {
	Name        string
	FirstSeenAt time.Time
	Paused      bool
	// PausedBy and PausedAt say who paused it last and when (empty / nil
	// for a schedule never paused).
	PausedBy string
	PausedAt *time.Time
	// ResumedAt is the last resume, nil if never resumed.
	ResumedAt *time.Time
	// HandledThrough is the latest scheduled instant fired, skipped or
	// dropped; nil when none yet. Catch-up looks at instants after the
	// latest of it, FirstSeenAt and ResumedAt.
	HandledThrough *time.Time
	UpdatedAt      time.Time
}

// Baseline is the instant after which a scheduled firing is still to be
// handled: the latest of FirstSeenAt, ResumedAt and HandledThrough.
func (s *ScheduleState) Baseline() time.Time {
	b := s.FirstSeenAt
	for _, t := range []*time.Time{s.ResumedAt, s.HandledThrough} {
		if t != nil && t.After(b) {
			b = *t
		}
	}
	return b
}

// FiringKind says why a firing happened.
type FiringKind string

const (
	// FiringScheduled: its cron rule fell due (on time or caught up).
	FiringScheduled FiringKind = "scheduled"
	// FiringManual: someone triggered it (API, CLI).
	FiringManual FiringKind = "manual"
)

// FiringOutcome says what a firing did.
type FiringOutcome string

const (
	FiringCreated FiringOutcome = "created"
	// FiringSkipped: overlap = "skip" and an earlier task was unfinished.
	FiringSkipped FiringOutcome = "skipped"
)

// ScheduleFiring is one recorded firing.
type ScheduleFiring struct {
	Schedule string
	Kind     FiringKind
	// At is the instant the firing is for (its cron instant, or the time of
	// a manual trigger).
	At      time.Time
	Outcome FiringOutcome
	// TaskID is the task created; 0 when skipped.
	TaskID int64
	// Actor triggered a manual firing ("" for a scheduled one).
	Actor     string
	CreatedAt time.Time
}

// SetSchedulePausedParams pauses (Paused) or resumes a schedule.
type SetSchedulePausedParams struct {
	Name   string
	Paused bool
	Actor  string
	Now    time.Time
}

// FireScheduleParams is one firing and the task it creates.
type FireScheduleParams struct {
	Schedule      string
	Kind          FiringKind
	At            time.Time
	Actor         string
	SkipIfRunning bool
	// Task is created unless the firing is skipped; its Now is the
	// firing's record time.
	Task *CreateTaskParams
}
