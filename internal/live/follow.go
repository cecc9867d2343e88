package live

import (
	"context"
	"time"
)

const (
	// redrawEvery refreshes a TTY frame between reads, so that elapsed
	// times and backoffs count down smoothly whatever the poll interval.
	redrawEvery = 200 * time.Millisecond
	// settleWait bounds how long a cancelled task's running steps are
	// waited for once the task is over.
	settleWait = 10 * time.Second
)

// Follow reads src every interval (and whenever it says the task changed,
// if it is a Notifier) and draws each snapshot with r, until the task is
// settled: it returns the last snapshot. A cancelled task whose steps are
// still running is waited for at most settleWait. It returns ctx's error
// when ctx ends first, and src's error as soon as a read fails (a source
// that wants to ride out an outage does so itself, see Snapshot.Note).
func Follow(ctx context.Context, src Source, r *Renderer, interval time.Duration) (Snapshot, error) {
	var changed <-chan struct{}
	if n, ok := src.(Notifier); ok {
		changed = n.Changed()
	}
	var redraw <-chan time.Time
	if r.opt.TTY && interval > redrawEvery {
		t := time.NewTicker(redrawEvery)
		defer t.Stop()
		redraw = t.C
	}
	poll := time.NewTimer(0)
	defer poll.Stop()
	var (
		last     Snapshot
		overSeen time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-redraw:
			if overSeen.IsZero() && last.TaskID == 0 {
				continue // nothing read yet
			}
			if err := r.Draw(last); err != nil {
				return last, err
			}
			continue
		case <-changed:
		case <-poll.C:
		}
		s, err := src.Snapshot(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			return last, err
		}
		last = s
		if err := r.Draw(s); err != nil {
			return s, err
		}
		if s.Over() && overSeen.IsZero() {
			overSeen = r.opt.Now()
		}
		if s.Settled() || (s.Over() && r.opt.Now().Sub(overSeen) >= settleWait) {
			return s, nil
		}
		poll.Reset(interval)
	}
}
