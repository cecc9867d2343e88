package live

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// ANSI control sequences the in-place view uses, and nothing else.
const (
	hideCursor = "\x1b[?25l"
	showCursor = "\x1b[?25h"
	clearLine  = "\r\x1b[2K"   // to column 1, erase the line
	clearBelow = "\x1b[J"      // erase from the cursor to the end of the screen
	upFormat   = "\x1b[%dA"    // cursor up N lines
	reset      = "\x1b[0m"     // end of a colored span
	barDone    = '█'           // the progress bar's filled cells
	barTodo    = '░'           // and its empty ones
	barWidth   = 20            // cells of the bar when the terminal allows
	plainTime  = "15:04:05"    // the clock of a plain line
	minWidth   = 20            // narrower terminals are treated as this wide
	moreFormat = "  … %d more" // the line standing for steps that do not fit
)

// Options say how a Renderer draws.
type Options struct {
	// TTY redraws a frame in place with ANSI cursor movement; otherwise a
	// line is printed per change and no control sequence is ever written.
	TTY bool
	// Color colors the state of each step (TTY only; NO_COLOR is the
	// caller's to honour).
	Color bool
	// Size returns the terminal's columns and rows (0 for unknown). Lines
	// are cut to fit the width, and a frame taller than the terminal shows
	// the steps that are moving and sums up the rest. Nil: no limit.
	Size func() (width, height int)
	// Now is the clock elapsed times and backoffs are measured against.
	Now func() time.Time
}

// Renderer draws successive snapshots of one task to a writer. It is safe
// for use by several goroutines (Above's writer runs beside Draw).
type Renderer struct {
	mu    sync.Mutex
	w     io.Writer
	opt   Options
	frame []string // the frame on screen (TTY), to erase or redraw
	drawn bool     // a frame was drawn: the cursor is hidden
	done  bool     // Close was called

	// Plain mode: what the lines printed so far said.
	seenTask bool
	task     string
	steps    map[string]string
	note     string
}

// New returns a renderer writing to w.
func New(w io.Writer, opt Options) *Renderer {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Renderer{w: w, opt: opt, steps: map[string]string{}}
}

// Draw shows s: the whole frame in place of the previous one on a TTY,
// else a line for each thing that changed since the last snapshot.
func (r *Renderer) Draw(s Snapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil
	}
	if !r.opt.TTY {
		return r.plain(s)
	}
	width, height := r.size()
	lines := frame(s, r.opt.Now(), width, height, r.opt.Color)
	var buf bytes.Buffer
	if !r.drawn {
		buf.WriteString(hideCursor)
		r.drawn = true
	}
	if len(r.frame) > 0 {
		fmt.Fprintf(&buf, upFormat, len(r.frame))
	}
	for _, l := range lines {
		buf.WriteString(clearLine)
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	buf.WriteString(clearBelow)
	r.frame = lines
	_, err := r.w.Write(buf.Bytes())
	return err
}

// Close ends the view: the last frame stays on screen, the cursor is
// shown again below it. Draw does nothing after Close.
func (r *Renderer) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil
	}
	r.done = true
	if r.drawn {
		_, err := io.WriteString(r.w, showCursor)
		return err
	}
	return nil
}

// Above returns a writer for other output to the same terminal (log lines
// on stderr): on a TTY each write erases the frame, goes out, and the
// frame is drawn again below it, so neither garbles the other. Writes
// should be whole lines. Without a TTY it is w itself.
func (r *Renderer) Above(w io.Writer) io.Writer {
	if !r.opt.TTY {
		return w
	}
	return &aboveWriter{r: r, w: w}
}

type aboveWriter struct {
	r *Renderer
	w io.Writer
}

func (a *aboveWriter) Write(p []byte) (int, error) {
	r := a.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || len(r.frame) == 0 {
		return a.w.Write(p)
	}
	var buf bytes.Buffer
	r.erase(&buf)
	if _, err := r.w.Write(buf.Bytes()); err != nil {
		return 0, err
	}
	n, err := a.w.Write(p)
	buf.Reset()
	for _, l := range r.frame {
		buf.WriteString(clearLine)
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	if _, werr := r.w.Write(buf.Bytes()); err == nil {
		err = werr
	}
	return n, err
}

// erase moves the cursor to the first line of the frame on screen and
// clears from there down.
func (r *Renderer) erase(buf *bytes.Buffer) {
	if len(r.frame) > 0 {
		fmt.Fprintf(buf, upFormat, len(r.frame))
	}
	buf.WriteString("\r" + clearBelow)
}

func (r *Renderer) size() (int, int) {
	if r.opt.Size == nil {
		return 0, 0
	}
	w, h := r.opt.Size()
	if w > 0 && w < minWidth {
		w = minWidth
	}
	return w, h
}

// frame is the in-place view of s at now: a header, a line per step, the
// progress bar and the note. Lines are cut to width-1 columns (0: no
// limit): a line filling the last column makes some terminals wrap, and a
// wrapped line breaks the cursor arithmetic of the next redraw. A frame
// taller than height-1 lines keeps the steps that are moving.
func frame(s Snapshot, now time.Time, width, height int, color bool) []string {
	var lines [][]span
	lines = append(lines, []span{{text: fmt.Sprintf("task %d %s  ", s.TaskID, s.Workflow)}, {text: s.State, color: taskColor(s)}})
	nameW, stateW, attW := 0, 0, 0
	for _, st := range s.Steps {
		nameW = max(nameW, utf8.RuneCountInString(st.Name))
		stateW = max(stateW, len(st.State))
		attW = max(attW, len(attempts(st)))
	}
	shown, hidden := fitSteps(s.Steps, height, s.Note != "")
	for i, st := range s.Steps {
		if !shown[i] {
			continue
		}
		sym, c := symbol(st)
		line := []span{
			{text: "  "},
			{text: sym + " ", color: c},
			{text: pad(st.Name, nameW) + "  "},
			{text: pad(st.State, stateW), color: c},
			{text: "  " + pad(attempts(st), attW)},
		}
		if e := elapsed(st, now); e != "" {
			line = append(line, span{text: "  " + e})
		}
		if d := detail(st, now); d != "" {
			line = append(line, span{text: "  " + d})
		}
		lines = append(lines, line)
	}
	if hidden > 0 {
		lines = append(lines, []span{{text: fmt.Sprintf(moreFormat, hidden)}})
	}
	lines = append(lines, progressBar(s, width))
	if s.Note != "" {
		lines = append(lines, []span{{text: s.Note}})
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		limit := 0
		if width > 0 {
			limit = width - 1
		}
		out[i] = render(l, limit, color)
	}
	return out
}

// fitSteps chooses the step lines a frame of height rows has room for
// (all of them when height is 0 or enough): the moving steps (running,
// failed) first, then the others in order; hidden counts the rest.
func fitSteps(steps []Step, height int, note bool) (shown []bool, hidden int) {
	shown = make([]bool, len(steps))
	room := len(steps)
	if height > 0 {
		extra := 3 // header, progress bar, the cursor's line below the frame
		if note {
			extra++
		}
		if avail := height - extra; avail < len(steps) {
			room = max(avail-1, 0) // one line says how many are left out
		}
	}
	for pass := 0; pass < 2; pass++ {
		for i, st := range steps {
			moving := st.State == StateInProgress || st.State == StateError
			if room > 0 && !shown[i] && (moving || pass == 1) {
				shown[i] = true
				room--
			}
		}
	}
	for _, ok := range shown {
		if !ok {
			hidden++
		}
	}
	return shown, hidden
}

// progressBar: [██████░░░░] 3/5 steps done  60%
func progressBar(s Snapshot, width int) []span {
	total, done := len(s.Steps), s.Done()
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	tail := fmt.Sprintf(" %d/%d steps done  %.0f%%", done, total, pct)
	cells := barWidth
	if width > 0 {
		// The bar shrinks before the numbers are cut.
		cells = min(cells, width-1-2-utf8.RuneCountInString(tail))
	}
	if cells < 4 {
		return []span{{text: strings.TrimSpace(tail)}}
	}
	filled := cells
	if total > 0 {
		filled = int(math.Round(float64(cells) * float64(done) / float64(total)))
	}
	c := ""
	if s.Succeeded() {
		c = green
	}
	return []span{
		{text: "["},
		{text: strings.Repeat(string(barDone), filled), color: c},
		{text: strings.Repeat(string(barTodo), cells-filled) + "]"},
		{text: tail},
	}
}

// plain prints a line per change: the task's state, each step whose state,
// attempt, backoff or blockage changed, the note.
func (r *Renderer) plain(s Snapshot) error {
	now := r.opt.Now()
	stamp := now.Format(plainTime) + " "
	var buf bytes.Buffer
	taskLine := fmt.Sprintf("task %d %s %s (%d/%d steps done)", s.TaskID, s.Workflow, s.State, s.Done(), len(s.Steps))
	taskChanged := !r.seenTask || r.task != s.State
	// The task's line comes first, except the one saying it is over,
	// which follows the steps that made it so.
	if taskChanged && !s.Over() {
		buf.WriteString(stamp + taskLine + "\n")
	}
	for _, st := range s.Steps {
		key := fmt.Sprintf("%s %d %t %t", st.State, st.Attempts, st.Blocked, st.NextRetryAt != nil)
		prev, seen := r.steps[st.Name]
		if prev == key || (!seen && st.State == StatePending) {
			r.steps[st.Name] = key
			continue
		}
		r.steps[st.Name] = key
		line := fmt.Sprintf("step %s %s", st.Name, st.State)
		if st.Attempts > 0 {
			line += " attempt " + attempts(st)
		}
		if st.State != StateInProgress {
			if e := elapsed(st, now); e != "" {
				line += " after " + e
			}
		}
		if d := detail(st, now); d != "" {
			line += " — " + d
		}
		buf.WriteString(stamp + line + "\n")
	}
	if taskChanged && s.Over() {
		buf.WriteString(stamp + taskLine + "\n")
	}
	r.seenTask, r.task = true, s.State
	if s.Note != r.note && s.Note != "" {
		buf.WriteString(stamp + s.Note + "\n")
	}
	r.note = s.Note
	if buf.Len() == 0 {
		return nil
	}
	_, err := r.w.Write(buf.Bytes())
	return err
}

// attempts: "2/3"; empty before the first attempt.
func attempts(st Step) string {
	if st.Attempts == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", st.Attempts, st.RetryLimit)
}

// elapsed is the latest attempt's running time: until now while it runs,
// until it ended otherwise; empty when there is none to tell.
func elapsed(st Step, now time.Time) string {
	if st.StartedAt == nil {
		return ""
	}
	switch {
	case st.State == StateInProgress:
		return duration(now.Sub(*st.StartedAt))
	case st.EndedAt != nil && !st.EndedAt.Before(*st.StartedAt):
		return duration(st.EndedAt.Sub(*st.StartedAt))
	}
	return ""
}

// detail is what more a person needs about the step: a claimed step
// waiting for a worker, a backoff's remaining wait, a blocked step's error.
func detail(st Step, now time.Time) string {
	switch {
	case st.State == StateInProgress && st.StartedAt == nil:
		return "waiting for a worker"
	case st.State == StateError && st.Blocked:
		return "blocked" + failure(st)
	case st.State == StateError && st.NextRetryAt != nil && st.NextRetryAt.After(now):
		return "retry in " + wait(st.NextRetryAt.Sub(now)) + failure(st)
	case st.State == StateError:
		return "retry due" + failure(st)
	}
	return ""
}

// failure: " (handler_error): card declined", or less when unknown.
func failure(st Step) string {
	var s string
	if st.ErrorKind != "" {
		s = " (" + st.ErrorKind + ")"
	}
	if st.ErrorMessage != "" {
		s += ": " + oneLine(st.ErrorMessage)
	}
	return s
}

// oneLine keeps a message on its line: a newline or another control
// character in it would break the frame (and could move the cursor).
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}

// duration: 0.4s, 12.3s, 42s, 3m05s, 2h07m.
func duration(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// wait is a time left, in whole seconds rounded up (a retry "in 0s" would
// be one that is already due).
func wait(d time.Duration) string {
	secs := int(math.Ceil(d.Seconds()))
	switch {
	case secs < 60:
		return fmt.Sprintf("%ds", secs)
	case secs < 3600:
		return fmt.Sprintf("%dm%02ds", secs/60, secs%60)
	}
	return fmt.Sprintf("%dh%02dm", secs/3600, secs/60%60)
}

// Colors, by SGR code.
const (
	green  = "32"
	red    = "31"
	yellow = "33"
	cyan   = "36"
	dim    = "2"
)

// symbol and color of a step's state.
func symbol(st Step) (string, string) {
	switch st.State {
	case StateComplete:
		return "✓", green
	case StateResolvedManually:
		return "✓", green
	case StateInProgress:
		return "▸", cyan
	case StateError:
		if st.Blocked {
			return "✗", red
		}
		return "↻", yellow
	case StateCancelled:
		return "⊘", dim
	}
	return "·", dim
}

func taskColor(s Snapshot) string {
	switch s.State {
	case StateComplete, StateResolvedManually:
		return green
	case StateError:
		return red
	case StateInProgress:
		return cyan
	}
	return dim
}

// span is a piece of a line with its color ("" for none).
type span struct {
	text, color string
}

// render joins the spans of a line, cut to limit columns (0: no limit),
// each rune counted as one column, colored if asked.
func render(line []span, limit int, color bool) string {
	var pieces []span
	left := limit
	for _, sp := range line {
		text := oneLine(sp.text)
		if limit > 0 {
			if left <= 0 {
				break
			}
			if n := utf8.RuneCountInString(text); n > left {
				text = string([]rune(text)[:left-1]) + "…" // say that it goes on
			}
			left -= utf8.RuneCountInString(text)
		}
		pieces = append(pieces, span{text: text, color: sp.color})
	}
	// No trailing blanks, colored or not.
	for i := len(pieces) - 1; i >= 0; i-- {
		pieces[i].text = strings.TrimRight(pieces[i].text, " ")
		if pieces[i].text != "" {
			break
		}
	}
	var b strings.Builder
	for _, p := range pieces {
		if color && p.color != "" && p.text != "" {
			b.WriteString("\x1b[" + p.color + "m" + p.text + reset)
		} else {
			b.WriteString(p.text)
		}
	}
	return b.String()
}

// pad right-pads s with spaces to n runes.
func pad(s string, n int) string {
	if k := utf8.RuneCountInString(s); k < n {
		return s + strings.Repeat(" ", n-k)
	}
	return s
}
