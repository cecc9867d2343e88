package live

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// t0 is the fake clock's "now" in every test.
var t0 = time.Date(2026, 3, 1, 12, 0, 10, 0, time.UTC)

func at(d time.Duration) *time.Time { t := t0.Add(d); return &t }

// sample: one step of each kind the view distinguishes.
func sample() Snapshot {
	return Snapshot{
		TaskID: 12, Workflow: "shop/checkout@1.0.0", State: StateInProgress,
		Steps: []Step{
			{Name: "reserve", State: StateComplete, Attempts: 1, RetryLimit: 3, StartedAt: at(-9 * time.Second), EndedAt: at(-8700 * time.Millisecond)},
			{Name: "charge_payment", State: StateError, Attempts: 1, RetryLimit: 3, StartedAt: at(-2 * time.Second), EndedAt: at(-1500 * time.Millisecond),
				ErrorKind: "handler_error", ErrorMessage: "gateway timeout", NextRetryAt: at(3200 * time.Millisecond)},
			{Name: "notify", State: StateInProgress, Attempts: 2, RetryLimit: 3, StartedAt: at(-12300 * time.Millisecond), EndedAt: at(-20 * time.Second)},
			{Name: "audit", State: StateError, Attempts: 3, RetryLimit: 3, StartedAt: at(-5 * time.Second), EndedAt: at(-4 * time.Second),
				ErrorKind: "permanent", ErrorMessage: "card declined\nby the bank", Blocked: true},
			{Name: "ship", State: StatePending, RetryLimit: 3},
		},
	}
}

func fixedClock() func() time.Time { return func() time.Time { return t0 } }

func TestFrameLines(t *testing.T) {
	got := frame(sample(), t0, 0, 0, false)
	want := []string{
		"task 12 shop/checkout@1.0.0  in_progress",
		"  ✓ reserve         complete     1/3  0.3s",
		"  ↻ charge_payment  error        1/3  0.5s  retry in 4s (handler_error): gateway timeout",
		"  ▸ notify          in_progress  2/3  12s",
		"  ✗ audit           error        3/3  1.0s  blocked (permanent): card declined by the bank",
		"  · ship            pending",
		"[████░░░░░░░░░░░░░░░░] 1/5 steps done  20%",
	}
	require.Equal(t, want, got)

	// A claimed step waiting for a worker, a backoff that has passed, a
	// finished task: the bar is full.
	s := sample()
	s.Steps[2].StartedAt = nil
	s.Steps[1].NextRetryAt = at(-time.Second)
	got = frame(s, t0, 0, 0, false)
	assert.Equal(t, "  ▸ notify          in_progress  2/3  waiting for a worker", got[3])
	assert.Equal(t, "  ↻ charge_payment  error        1/3  0.5s  retry due (handler_error): gateway timeout", got[2])

	done := Snapshot{TaskID: 1, Workflow: "d/x@1", State: StateComplete, Steps: []Step{
		{Name: "a", State: StateComplete, Attempts: 1, RetryLimit: 1},
		{Name: "b", State: StateResolvedManually},
	}}
	got = frame(done, t0, 0, 0, false)
	assert.Equal(t, "[████████████████████] 2/2 steps done  100%", got[len(got)-1])
}

func TestFrameTruncatesToTheWidth(t *testing.T) {
	s := sample()
	s.Note = "the server does not answer: showing the last state read, retrying"
	for _, width := range []int{40, 25, 20} {
		got := frame(s, t0, width, 0, false)
		require.Len(t, got, 8)
		for _, l := range got {
			require.LessOrEqual(t, utf8.RuneCountInString(l), width-1, "width %d: %q", width, l)
		}
		assert.True(t, strings.HasSuffix(got[2], "…"), "a cut line says so: %q", got[2])
	}
	got := frame(s, t0, 40, 0, false)
	assert.Equal(t, "  ↻ charge_payment  error        1/3  …", got[2])
	// The bar shrinks before the numbers are cut.
	assert.Equal(t, "[███░░░░░░░░░░░░░░] 1/5 steps done  20%", got[6])
	// Colors do not count as columns, and never end up cut in half.
	colored := frame(s, t0, 40, 0, true)
	for i, l := range colored {
		plain := ansi.ReplaceAllString(l, "")
		assert.Equal(t, got[i], plain)
		assert.Equal(t, strings.Count(l, "\x1b["), 2*strings.Count(l, reset), "every color is reset: %q", l)
	}
	assert.Contains(t, colored[1], "\x1b[32m✓ \x1b[0m", "complete is green")
	assert.Contains(t, colored[4], "\x1b[31m✗ \x1b[0m", "blocked is red")
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

func TestFrameTallerThanTheTerminalKeepsMovingSteps(t *testing.T) {
	s := Snapshot{TaskID: 3, Workflow: "d/big@1", State: StateInProgress}
	for i := range 40 {
		st := Step{Name: "s" + strconv.Itoa(i), State: StateComplete, Attempts: 1, RetryLimit: 1}
		if i >= 30 {
			st.State = StatePending
		}
		s.Steps = append(s.Steps, st)
	}
	s.Steps[35].State, s.Steps[35].Attempts = StateInProgress, 1
	got := frame(s, t0, 0, 10, false)
	require.Len(t, got, 9, "one row is left for the cursor")
	assert.Contains(t, got[6], "▸ s35", "the running step is kept (its place in the order too), pending and complete ones fill the rest")
	assert.Contains(t, got[5], "s4 ")
	assert.Equal(t, "  … 34 more", got[7])
	assert.Equal(t, "[███████████████░░░░░] 30/40 steps done  75%", got[8])
	// Enough room: every step.
	assert.Len(t, frame(s, t0, 0, 50, false), 42)
}

// screen is a tiny terminal: it interprets what the renderer writes (the
// sequences it uses, and nothing else) into the lines a person would see.
type screen struct {
	rows     []string
	row, col int
}

var seq = regexp.MustCompile(`^\x1b\[(\??)(\d*)([A-Za-z])`)

func (sc *screen) Write(p []byte) (int, error) {
	s := string(p)
	for s != "" {
		if m := seq.FindStringSubmatch(s); m != nil {
			n, _ := strconv.Atoi(m[2])
			switch {
			case m[1] == "?": // cursor shown or hidden: nothing to see
			case m[3] == "A":
				sc.row = max(sc.row-n, 0)
			case m[3] == "K": // the whole line
				sc.grow()
				sc.rows[sc.row] = ""
			case m[3] == "J":
				sc.grow()
				sc.rows = sc.rows[:sc.row+1]
				sc.rows[sc.row] = string([]rune(sc.rows[sc.row])[:min(sc.col, utf8.RuneCountInString(sc.rows[sc.row]))])
			case m[3] == "m": // colors
			default:
				return 0, errors.New("unexpected sequence " + strconv.Quote(m[0]))
			}
			s = s[len(m[0]):]
			continue
		}
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		sc.grow()
		switch r {
		case '\r':
			sc.col = 0
		case '\n':
			sc.row++
			sc.col = 0
		default:
			line := []rune(sc.rows[sc.row])
			for len(line) < sc.col {
				line = append(line, ' ')
			}
			if sc.col < len(line) {
				line[sc.col] = r
			} else {
				line = append(line, r)
			}
			sc.rows[sc.row] = string(line)
			sc.col++
		}
	}
	return len(p), nil
}

func (sc *screen) grow() {
	for len(sc.rows) <= sc.row {
		sc.rows = append(sc.rows, "")
	}
}

// text is the screen without the cursor's empty last line.
func (sc *screen) text() []string {
	rows := append([]string(nil), sc.rows...)
	for len(rows) > 0 && rows[len(rows)-1] == "" {
		rows = rows[:len(rows)-1]
	}
	return rows
}

func TestTTYRedrawsInPlace(t *testing.T) {
	var raw bytes.Buffer
	sc := &screen{}
	now := t0
	r := New(&tee{&raw, sc}, Options{TTY: true, Color: true, Now: func() time.Time { return now },
		Size: func() (int, int) { return 60, 40 }})
	_, _ = sc.Write([]byte("task 12 created\n"))

	s := sample()
	require.NoError(t, r.Draw(s))
	first := raw.String()
	assert.True(t, strings.HasPrefix(first, hideCursor))
	assert.NotContains(t, first, "\x1b[7A", "nothing to move up over yet")

	// Log lines written through Above land above the frame.
	log := r.Above(sc)
	_, err := log.Write([]byte("level=WARN msg=\"plugin restarted\"\n"))
	require.NoError(t, err)

	now = t0.Add(2 * time.Second)
	s.Steps[1].State, s.Steps[1].Attempts, s.Steps[1].StartedAt = StateInProgress, 2, at(1500*time.Millisecond)
	s.Steps[1].NextRetryAt = nil
	require.NoError(t, r.Draw(s))
	s.State = StateError
	s.Steps[1].State, s.Steps[2].State, s.Steps[2].EndedAt = StateComplete, StateComplete, at(1*time.Second)
	s.Steps[1].EndedAt = at(1900 * time.Millisecond)
	require.NoError(t, r.Draw(s))
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "twice is fine")
	require.NoError(t, r.Draw(s), "a draw after Close does nothing")

	out := raw.String()
	assert.Contains(t, out[len(first):], "\x1b[7A"+clearLine, "moves up over the 7 lines of the frame and clears each")
	assert.True(t, strings.HasSuffix(out, clearBelow+showCursor), "ends by showing the cursor: %q", out[len(out)-20:])
	assert.Equal(t, 1, strings.Count(out, showCursor))

	want := append([]string{"task 12 created", `level=WARN msg="plugin restarted"`}, frame(s, now, 60, 40, false)...)
	assert.Equal(t, want, sc.text(), "the screen shows the final frame once, below the lines written before it")
	assert.Equal(t, "  ✓ charge_payment  complete  2/3  0.4s", sc.text()[4])
}

type tee struct{ a, b io.Writer }

func (t *tee) Write(p []byte) (int, error) { _, _ = t.a.Write(p); return t.b.Write(p) }

func TestPlainPrintsALinePerChange(t *testing.T) {
	var out bytes.Buffer
	now := t0
	r := New(&out, Options{Now: func() time.Time { return now }})
	require.Same(t, &out, r.Above(&out), "no TTY: other output goes straight through")

	s := Snapshot{TaskID: 7, Workflow: "d/flaky@0.1.0", State: StatePending, Steps: []Step{
		{Name: "a", State: StatePending, RetryLimit: 1},
		{Name: "b", State: StatePending, RetryLimit: 3},
	}}
	require.NoError(t, r.Draw(s))
	require.NoError(t, r.Draw(s), "nothing changed: nothing printed")

	now = t0.Add(time.Second)
	s.State = StateInProgress
	s.Steps[0] = Step{Name: "a", State: StateComplete, Attempts: 1, RetryLimit: 1, StartedAt: at(200 * time.Millisecond), EndedAt: at(500 * time.Millisecond)}
	s.Steps[1] = Step{Name: "b", State: StateInProgress, Attempts: 1, RetryLimit: 3, StartedAt: at(600 * time.Millisecond)}
	require.NoError(t, r.Draw(s))

	now = t0.Add(2 * time.Second)
	s.Steps[1] = Step{Name: "b", State: StateError, Attempts: 1, RetryLimit: 3, StartedAt: at(600 * time.Millisecond), EndedAt: at(1800 * time.Millisecond),
		ErrorKind: "handler_error", ErrorMessage: "boom", NextRetryAt: at(3800 * time.Millisecond)}
	require.NoError(t, r.Draw(s))
	now = t0.Add(2500 * time.Millisecond)
	require.NoError(t, r.Draw(s), "a backoff counting down is no change")

	now = t0.Add(5 * time.Second)
	s.State = StateError
	s.Steps[1] = Step{Name: "b", State: StateError, Attempts: 2, RetryLimit: 3, StartedAt: at(4 * time.Second), EndedAt: at(4100 * time.Millisecond),
		ErrorKind: "permanent", ErrorMessage: "no", Blocked: true}
	s.Note = "the server does not answer"
	require.NoError(t, r.Draw(s))

	assert.Equal(t, `12:00:10 task 7 d/flaky@0.1.0 pending (0/2 steps done)
12:00:11 task 7 d/flaky@0.1.0 in_progress (1/2 steps done)
12:00:11 step a complete attempt 1/1 after 0.3s
12:00:11 step b in_progress attempt 1/3
12:00:12 step b error attempt 1/3 after 1.2s — retry in 2s (handler_error): boom
12:00:15 step b error attempt 2/3 after 0.1s — blocked (permanent): no
12:00:15 task 7 d/flaky@0.1.0 error (1/2 steps done)
12:00:15 the server does not answer
`, out.String())
	assert.NotContains(t, out.String(), "\x1b", "never a control sequence")
}

func TestSnapshotPredicates(t *testing.T) {
	s := Snapshot{State: StateCancelled, Steps: []Step{{State: StateInProgress}, {State: StateCancelled}}}
	assert.True(t, s.Over())
	assert.False(t, s.Settled(), "a running handler of a cancelled task has not returned")
	s.Steps[0].State = StateCancelled
	assert.True(t, s.Settled())
	assert.False(t, s.Succeeded())
	for state, over := range map[string]bool{StatePending: false, StateInProgress: false, StateComplete: true, StateError: true, StateResolvedManually: true} {
		assert.Equal(t, over, Snapshot{State: state}.Over(), state)
		assert.Equal(t, over, Snapshot{State: state}.Settled(), state)
	}
	assert.True(t, Snapshot{State: StateResolvedManually}.Succeeded())
	b := sample().BlockedSteps()
	require.Len(t, b, 1)
	assert.Equal(t, "audit", b[0].Name)
}

// fakeSource hands out its snapshots one read at a time, then the last
// one forever.
type fakeSource struct {
	mu      sync.Mutex
	snaps   []Snapshot
	reads   int
	err     error
	changed chan struct{}
}

func (f *fakeSource) Snapshot(context.Context) (Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil && f.reads == len(f.snaps)+1 {
		return Snapshot{}, f.err
	}
	return f.snaps[min(f.reads, len(f.snaps))-1], nil
}

type notifying struct{ *fakeSource }

func (n notifying) Changed() <-chan struct{} { return n.changed }

func TestFollowUntilSettled(t *testing.T) {
	running := Snapshot{TaskID: 1, Workflow: "d/x@1", State: StateInProgress, Steps: []Step{{Name: "a", State: StateInProgress, Attempts: 1, RetryLimit: 1}}}
	stopping := running
	stopping.State = StateCancelled
	cancelled := Snapshot{TaskID: 1, Workflow: "d/x@1", State: StateCancelled, Steps: []Step{{Name: "a", State: StateCancelled, Attempts: 1, RetryLimit: 1}}}
	src := &fakeSource{snaps: []Snapshot{running, running, stopping, cancelled}}
	var out bytes.Buffer
	r := New(&out, Options{Now: fixedClock()})
	last, err := Follow(context.Background(), src, r, time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, cancelled, last, "a cancelled task's running step is waited for")
	assert.Equal(t, 4, src.reads)
	assert.Equal(t, "12:00:10 step a cancelled attempt 1/1\n", lastLine(out.String(), 2))

	// A Notifier is read again as soon as it says so: with an hour between
	// polls, only the notifications move it on.
	n := notifying{&fakeSource{snaps: []Snapshot{running, cancelled}, changed: make(chan struct{})}}
	done := make(chan error, 1)
	go func() {
		_, err := Follow(context.Background(), n, New(&bytes.Buffer{}, Options{}), time.Hour)
		done <- err
	}()
	for notified := 0; ; notified++ {
		select {
		case n.changed <- struct{}{}:
			continue
		case err := <-done:
			require.NoError(t, err)
			assert.Equal(t, 2, n.reads)
			assert.GreaterOrEqual(t, notified, 1)
		}
		break
	}

	// A failed read ends it with the error; so does the context.
	boom := errors.New("boom")
	_, err = Follow(context.Background(), &fakeSource{snaps: []Snapshot{running}, err: boom}, New(&bytes.Buffer{}, Options{}), time.Millisecond)
	require.ErrorIs(t, err, boom)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		cancel()
	}()
	last, err = Follow(ctx, &fakeSource{snaps: []Snapshot{running}}, New(&bytes.Buffer{}, Options{TTY: true}), time.Millisecond)
	require.ErrorIs(t, err, context.Canceled)
	_ = last
}

func TestFollowGivesUpOnAStuckCancelledStep(t *testing.T) {
	stuck := Snapshot{TaskID: 1, State: StateCancelled, Steps: []Step{{Name: "a", State: StateInProgress}}}
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(time.Second); return now }
	src := &fakeSource{snaps: []Snapshot{stuck}}
	last, err := Follow(context.Background(), src, New(&bytes.Buffer{}, Options{Now: clock}), time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, stuck, last)
	assert.GreaterOrEqual(t, src.reads, 5, "it waited a while (by the fake clock)")
}

// lastLine is the nth line from the end of out, with its newline.
func lastLine(out string, n int) string {
	lines := strings.SplitAfter(out, "\n")
	return lines[len(lines)-n]
}
