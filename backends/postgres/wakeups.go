package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/backends"
)

// Wake-ups across nodes (backends.WakeupSource). A write that makes work
// claimable sends NOTIFY on the store's channel inside its own transaction, so the
// notification is delivered when, and only if, the change commits. Its
// payload is "SENDER AT": the sending Store's random id, so that a node does
// not wake itself (its engine already knows), and the instant the work
// becomes claimable in Unix microseconds, 0 for "at once" (a backoff's end
// for a failure that will be retried).
//
// Sending is rate-limited per Store: NOTIFY takes a database-wide lock at
// commit that serializes the transactions that notify, and every listener
// is woken for each one, so a busy node notifying on every commit would
// cost the whole cluster (a store notifying at 500/s took 15% more CPU
// per step in BenchmarkThroughput than one that did not notify). A token
// bucket of notifyBurst tokens, one more every notifyInterval, allows a
// write to notify in its own transaction while it has a token (a node at
// an ordinary pace always does); writes committed while it is empty are
// folded into one notification sent on its own when the next token comes,
// carrying the earliest of their instants. Every committed change is thus
// announced within notifyInterval of its commit, and never before it.
//
// Notifications are per database, tables per schema: the channel is named
// after the schema the store works in (wakeChannel), so that taskerd
// clusters in different schemas of one database do not wake each other.
const (
	notifyBurst    = 4
	notifyInterval = 5 * time.Millisecond
)

// wakeChannel names the channel of the schema: taskerd_wake_ and 8 hex
// digits of its SHA-256 (a channel name is an identifier, at most 63
// bytes; a schema's name may be as long).
func wakeChannel(schema string) string {
	sum := sha256.Sum256([]byte(schema))
	return "taskerd_wake_" + hex.EncodeToString(sum[:4])
}

// notifier debounces one Store's notifications.
type notifier struct {
	id      string
	channel string
	// send sends a trailing notification on its own.
	send func(ctx context.Context, payload string) error
	// clock is time.Now but in tests.
	clock func() time.Time

	mu sync.Mutex
	// The bucket: tokens as of filled.
	tokens float64
	filled time.Time
	// A trailing notification is due (timer set): for the earliest of
	// the folded writes' instants.
	trailing bool
	at       time.Time
	closed   bool
	timer    *time.Timer
}

func newNotifier(s *Store, channel string) *notifier {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &notifier{id: hex.EncodeToString(b), channel: channel, send: func(ctx context.Context, payload string) error {
		_, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload)
		return err
	}}
}

// wake is one write's notification: nil when the write made no claimable
// work. lead says whether it is sent inside the write's transaction.
type wake struct {
	n    *notifier
	at   time.Time
	lead bool
}

// note decides how a write whose events are these announces them: nil when
// they make no work (backends.WakeAt).
func (n *notifier) note(events []*backends.Event, now time.Time) *wake {
	at, ok := backends.WakeAt(events, now)
	if !ok {
		return nil
	}
	if !at.After(now) {
		at = time.Time{} // at once
	}
	return n.noteAt(at)
}

// noteAt is note for work claimable at at (the zero time: at once).
func (n *notifier) noteAt(at time.Time) *wake {
	w := &wake{n: n, at: at}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.take(n.now()) {
		w.lead = true
	}
	return w
}

func (n *notifier) payload(at time.Time) string {
	us := int64(0)
	if !at.IsZero() {
		us = at.UnixMicro()
	}
	return n.id + " " + strconv.FormatInt(us, 10)
}

// exec sends the notification inside the transaction q is, if it leads.
func (w *wake) exec(ctx context.Context, q querier) error {
	if w == nil || !w.lead {
		return nil
	}
	_, err := q.Exec(ctx, `SELECT pg_notify($1, $2)`, w.n.channel, w.n.payload(w.at))
	return err
}

// queue adds the notification to a pipeline, if it leads; read reads its
// answer in its turn.
func (w *wake) queue(b *pgx.Batch) {
	if w != nil && w.lead {
		b.Queue(`SELECT pg_notify($1, $2)`, w.n.channel, w.n.payload(w.at))
	}
}

func (w *wake) read(br pgx.BatchResults) error {
	if w == nil || !w.lead {
		return nil
	}
	_, err := br.Exec()
	return err
}

// committed is called once the write committed: a write that did not lead
// is folded into the window's trailing notification.
func (w *wake) committed() {
	if w == nil || w.lead {
		return
	}
	n := w.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	if n.trailing {
		if earlier(w.at, n.at) {
			n.at = w.at
		}
		return
	}
	n.trailing, n.at = true, w.at
	n.timer = time.AfterFunc(n.untilToken(n.now()), n.flush)
}

// flush sends the trailing notification on its own.
func (n *notifier) flush() {
	n.mu.Lock()
	if n.closed || !n.trailing {
		n.mu.Unlock()
		return
	}
	at := n.at
	n.trailing = false
	// The token this notification spends; none may be left when it was
	// fired early, which only lets the bucket go negative for a moment.
	n.fill(n.now())
	n.tokens--
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.send(ctx, n.payload(at)); err != nil {
		// Not fatal: the other nodes find the work at their next poll.
		slog.Default().Debug("sending a wake-up notification", "err", err)
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	if n.timer != nil {
		n.timer.Stop()
	}
}

// listenRetry bounds the pause before Wakeups reconnects.
const listenRetry = 5 * time.Second

// Wakeups implements backends.WakeupSource: one connection of its own,
// outside the pool, LISTENs on the store's channel. It delivers the zero time (at
// once) when it starts listening and after every reconnection, then each other
// Store's notification, dropping one when the receiver is more than the
// channel's buffer behind (the receiver then still finds the work by
// NextWakeup or its poll).
func (s *Store) Wakeups(ctx context.Context) <-chan time.Time {
	ch := make(chan time.Time, 64)
	send := func(t time.Time) {
		select {
		case ch <- t:
		default:
		}
	}
	go func() {
		defer close(ch)
		pause := 50 * time.Millisecond
		for ctx.Err() == nil {
			err := s.listen(ctx, send)
			if ctx.Err() != nil {
				return
			}
			slog.Default().Warn("listening for wake-ups from other nodes; retrying", "in", pause, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(pause*2, listenRetry)
		}
	}()
	return ch
}

// listen runs one LISTEN connection until it fails or ctx is done.
func (s *Store) listen(ctx context.Context, send func(time.Time)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.wakes.channel}.Sanitize()); err != nil {
		return err
	}
	// Whatever was announced before this LISTEN is lost: look now.
	send(time.Time{})
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		sender, at, err := parseWake(n.Payload)
		if err != nil {
			slog.Default().Debug("ignoring a wake-up notification", "payload", n.Payload, "err", err)
			continue
		}
		if sender == s.wakes.id {
			continue
		}
		send(at)
	}
}

func (n *notifier) now() time.Time {
	if n.clock != nil {
		return n.clock()
	}
	return time.Now()
}

// fill adds the tokens earned since the last fill. Callers hold mu.
func (n *notifier) fill(now time.Time) {
	if n.filled.IsZero() {
		n.tokens, n.filled = notifyBurst, now
		return
	}
	n.tokens = min(notifyBurst, n.tokens+float64(now.Sub(n.filled))/float64(notifyInterval))
	n.filled = now
}

// take spends a token if there is one. Callers hold mu.
func (n *notifier) take(now time.Time) bool {
	n.fill(now)
	if n.tokens >= 1 {
		n.tokens--
		return true
	}
	return false
}

// untilToken is how long until the bucket holds a token. Callers hold mu.
func (n *notifier) untilToken(now time.Time) time.Duration {
	n.fill(now)
	return max(time.Duration((1-n.tokens)*float64(notifyInterval)), 0)
}

// earlier orders instants where the zero time (at once) is the earliest.
func earlier(a, b time.Time) bool {
	return !b.IsZero() && (a.IsZero() || a.Before(b))
}

// parseWake reads a payload: "SENDER AT" (AT in Unix microseconds, 0 for
// now: the zero time).
func parseWake(payload string) (sender string, at time.Time, err error) {
	sender, us, ok := strings.Cut(payload, " ")
	if !ok || sender == "" {
		return "", time.Time{}, fmt.Errorf("not SENDER AT")
	}
	v, err := strconv.ParseInt(us, 10, 64)
	if err != nil || v < 0 {
		return "", time.Time{}, fmt.Errorf("bad instant %q", us)
	}
	if v > 0 {
		at = time.UnixMicro(v)
	}
	return sender, at, nil
}
