package engine

import (
	"context"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// listenWakeups turns another node's notifications (a store that is a
// backends.WakeupSource: PostgreSQL) into wake-ups of Run: at once for work
// claimable now, at its instant for a backoff another node recorded. Only
// the earliest future instant has a timer of its own; when it fires the
// loop asks the store's NextWakeup again (wakeDirty), which knows every
// later one. It returns when ctx is done.
func (e *Engine) listenWakeups(ctx context.Context, src backends.WakeupSource) {
	ch := src.Wakeups(ctx)
	var (
		timer *time.Timer
		due   time.Time // the timer's instant; zero: no timer
		fired <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	wake := func() {
		e.wakeDirty.Store(true)
		e.Wake()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case at, ok := <-ch:
			if !ok {
				return
			}
			now := e.now()
			if at.IsZero() || !at.After(now) {
				wake()
				continue
			}
			if !due.IsZero() && !at.Before(due) {
				continue
			}
			if timer != nil {
				timer.Stop()
			}
			due = at
			timer = time.NewTimer(at.Sub(now))
			fired = timer.C
		case <-fired:
			due, fired = time.Time{}, nil
			wake()
		}
	}
}
