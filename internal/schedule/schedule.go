// Package schedule runs the schedules of the loaded workflow files: it
// works out which firings are due and asks the engine to fire them
// (engine.FireSchedule, which records the firing and creates its task in one
// transaction).
//
// It is a package of its own, not part of the engine, because it decides
// nothing that matters: every node runs one, each fires what it finds due,
// and the database's firing key makes a firing create one task however many
// nodes ask. The engine stays a state machine over the store; this package
// only adds a timer and the reading of cron rules, and can be tested with a
// fake clock by calling Tick. It is internal because taskerd serve is its
// only user.
package schedule

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
)

// Defaults for Config.
const (
	// DefaultMisfireGrace: a firing found due at most this late still runs
	// with catch_up = "none" (the scheduler wakes a little after its
	// instant, and a busy database may delay it further).
	DefaultMisfireGrace = time.Minute
	// DefaultRetryDelay is the wait before trying a firing that failed
	// (the database unavailable, a handler not registered on this node).
	DefaultRetryDelay = 30 * time.Second
	// DefaultPoll bounds every wait, so that a schedule paused or resumed
	// on another node, or a clock that jumped, is noticed.
	DefaultPoll = time.Minute
	// MaxCatchUp bounds the firings catch_up = "all" runs after a
	// downtime: the most recent ones run, the older are dropped (logged).
	MaxCatchUp = 1000
)

// Config configures a Scheduler. Engine is required.
type Config struct {
	Engine *engine.Engine
	// Clock defaults to engine.RealClock; tests give the engine's.
	Clock  engine.Clock
	Logger *slog.Logger
	// MisfireGrace, RetryDelay, Poll: see the defaults.
	MisfireGrace time.Duration
	RetryDelay   time.Duration
	Poll         time.Duration
}

// Scheduler fires the schedules of its engine's catalog. Safe for
// concurrent use; Run runs once.
type Scheduler struct {
	eng   *engine.Engine
	clock engine.Clock
	log   *slog.Logger
	grace time.Duration
	retry time.Duration
	poll  time.Duration
	wake  chan struct{}

	mu sync.Mutex
	// retryAt holds, per schedule, when a failed firing may be tried again.
	retryAt map[string]time.Time
}

// New returns a scheduler; call Run.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Engine == nil {
		return nil, errors.New("schedule: Config.Engine is required")
	}
	s := &Scheduler{
		eng: cfg.Engine, clock: cfg.Clock, log: cfg.Logger,
		grace: cfg.MisfireGrace, retry: cfg.RetryDelay, poll: cfg.Poll,
		wake:    make(chan struct{}, 1),
		retryAt: map[string]time.Time{},
	}
	if s.clock == nil {
		s.clock = engine.RealClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.grace <= 0 {
		s.grace = DefaultMisfireGrace
	}
	if s.retry <= 0 {
		s.retry = DefaultRetryDelay
	}
	if s.poll <= 0 {
		s.poll = DefaultPoll
	}
	return s, nil
}

// Wake makes Run look at the schedules now: one was paused, resumed or
// triggered, or the workflows were reloaded.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run fires due schedules until ctx is done, then returns nil. Between
// passes it sleeps until the next firing, a Wake, or Poll.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		next := s.Tick(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := s.poll
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(s.clock.Now()), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Tick fires every firing due at the clock's now, for every schedule of
// the engine's catalog, and returns the earliest instant a firing (or a
// retry) is due next: the zero time when none is. Errors are logged and
// retried after RetryDelay.
func (s *Scheduler) Tick(ctx context.Context) time.Time {
	now := s.clock.Now()
	schedules := s.eng.Catalog().Schedules()
	if len(schedules) == 0 {
		return time.Time{}
	}
	store := s.eng.Store()
	states := map[string]*backends.ScheduleState{}
	list, err := store.ScheduleStates(ctx)
	if err != nil {
		s.log.Warn("schedules: cannot read their state; retrying", "error", err, "retry_in", s.retry)
		return now.Add(s.retry)
	}
	for _, st := range list {
		states[st.Name] = st
	}
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, sc := range schedules {
		if ctx.Err() != nil {
			return next
		}
		st := states[sc.Name]
		if st == nil {
			if st, err = store.EnsureSchedule(ctx, sc.Name, now); err != nil {
				s.log.Warn("schedule: cannot note it; retrying", "schedule", sc.Name, "error", err, "retry_in", s.retry)
				earlier(now.Add(s.retry))
				continue
			}
		}
		earlier(s.tickOne(ctx, sc, st, now))
	}
	return next
}

// tickOne handles one schedule at now and returns when it is due next.
func (s *Scheduler) tickOne(ctx context.Context, sc *definition.Schedule, st *backends.ScheduleState, now time.Time) time.Time {
	if st.Paused {
		return time.Time{}
	}
	s.mu.Lock()
	retryAt, retrying := s.retryAt[sc.Name]
	s.mu.Unlock()
	if retrying && now.Before(retryAt) {
		return retryAt
	}
	due, dropped, next := dueInstants(sc, st.Baseline(), now)
	if len(due) == 0 {
		return next
	}
	latest := due[len(due)-1]
	var fire []time.Time
	switch sc.CatchUp {
	case definition.CatchUpAll:
		fire = due
		if dropped > 0 {
			s.log.Warn("schedule: more missed firings than catch_up = \"all\" runs; the oldest are dropped",
				"schedule", sc.Name, "dropped", dropped, "running", len(due), "max", MaxCatchUp)
		}
	case definition.CatchUpOne:
		fire = []time.Time{latest}
	default: // none
		if now.Sub(latest) <= s.grace {
			fire = []time.Time{latest}
		}
	}
	if missed := dropped + len(due) - len(fire); missed > 0 && sc.CatchUp != definition.CatchUpAll {
		s.log.Info("schedule: missed firings not run (catch_up)", "schedule", sc.Name, "catch_up", string(sc.CatchUp),
			"missed", missed, "through", latest)
	}
	for _, at := range fire {
		firing, _, created, err := s.eng.FireSchedule(ctx, engine.FireRequest{Schedule: sc, Kind: backends.FiringScheduled, At: at})
		if errors.Is(err, backends.ErrFiringHandled) {
			// Another node handled it since this pass read the schedule's
			// state (fired it, its record since deleted, or passed over
			// it): nothing to do, and nothing to retry.
			s.log.Info("schedule: instant already handled; not fired again", "schedule", sc.Name, "at", at)
			continue
		}
		if err != nil {
			s.log.Error("schedule: firing failed; retrying", "schedule", sc.Name, "at", at, "error", err, "retry_in", s.retry)
			s.mu.Lock()
			s.retryAt[sc.Name] = now.Add(s.retry)
			s.mu.Unlock()
			return now.Add(s.retry)
		}
		if created {
			s.log.Info("schedule fired", "schedule", sc.Name, "at", at, "outcome", string(firing.Outcome), "task_id", firing.TaskID)
		}
	}
	if len(fire) == 0 {
		if err := s.eng.Store().SkipScheduleThrough(ctx, sc.Name, latest, now); err != nil {
			s.log.Error("schedule: cannot record missed firings; retrying", "schedule", sc.Name, "error", err, "retry_in", s.retry)
			return now.Add(s.retry)
		}
	}
	s.mu.Lock()
	delete(s.retryAt, sc.Name)
	s.mu.Unlock()
	return next
}

// dueInstants lists the cron instants in (after, now], at most MaxCatchUp
// of them (the latest; dropped counts the others), and the first instant
// after now (zero if the rule never fires again).
func dueInstants(sc *definition.Schedule, after, now time.Time) (due []time.Time, dropped int, next time.Time) {
	t := sc.Next(after)
	for !t.IsZero() && !t.After(now) {
		if len(due) == MaxCatchUp {
			due = append(due[:0], due[1:]...)
			dropped++
		}
		due = append(due, t)
		t = sc.Next(t)
	}
	return due, dropped, t
}
