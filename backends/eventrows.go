package backends

import (
	"encoding/json"
	"fmt"
	"time"
)

// How the stores keep the log: one row per run of events. A write's events
// come grouped by task (ClaimEvents and the other builders keep a task's
// events together), and one task's consecutive events get consecutive Seqs,
// so a store writes each run as one row: its first Seq, its last Seq, the
// task, namespace and instant of its first event (readers filter on the
// first two), and the events' JSON without their Seqs (event i of a row
// is first+i; EncodeEventRun). One row instead of
// three per claimed step is most of what the log costs a write; a reader
// finds the row holding any Seq by the primary key (the row with the
// greatest first Seq at or below it).

// EventRuns splits events into runs: maximal slices of consecutive events
// of one task.
func EventRuns(events []*Event) [][]*Event {
	var runs [][]*Event
	for start := 0; start < len(events); {
		end := start + 1
		for end < len(events) && events[end].TaskID == events[start].TaskID {
			end++
		}
		runs = append(runs, events[start:end])
		start = end
	}
	return runs
}

// EventRow is a stored run as a store reads it back: its first Seq, the
// columns it was written with (the first event's task, namespace and
// instant) and its body.
type EventRow struct {
	First     int64
	TaskID    int64
	Namespace string
	Time      time.Time
	Body      []byte
}

// EncodeEventRun is a run's stored body, its events without their Seqs.
// When every event of the run shares the write's instant, the task, its
// namespace and workflow (always, for the runs the builders make), those
// are not repeated: the row's columns hold the first three, and the body
// is {"workflow":…,"events":[…]}, each event without the four (a third
// of a claim's bytes, and the writer pays for bytes in WAL pages). A run
// whose events differ in them is a plain JSON array of the whole events.
// The events are encoded as they are; a store sets their Time to its own
// precision first, so that what its sink hands out is what it will read
// back.
func EncodeEventRun(run []*Event) ([]byte, error) {
	b := make([]byte, 0, 160*len(run)+64)
	first := run[0]
	shared := true
	for _, ev := range run[1:] {
		if !ev.Time.Equal(first.Time) || ev.Time.Location() != first.Time.Location() || ev.TaskID != first.TaskID ||
			ev.Namespace != first.Namespace || ev.Workflow != first.Workflow {
			shared = false
			break
		}
	}
	if shared {
		b = append(b, `{"workflow":`...)
		b = appendJSONString(b, first.Workflow, true)
		b = append(b, `,"events":`...)
	}
	b = append(b, '[')
	for i, ev := range run {
		if i > 0 {
			b = append(b, ',')
		}
		body := *ev
		body.Seq = 0
		var err error
		if b, err = body.appendJSON(b, true, shared); err != nil {
			return nil, fmt.Errorf("encoding the events of task %d: %w", first.TaskID, err)
		}
	}
	b = append(b, ']')
	if shared {
		b = append(b, '}')
	}
	return b, nil
}

// sharedRun is the body of a run whose events share their instant and task
// (EncodeEventRun).
type sharedRun struct {
	Workflow string   `json:"workflow"`
	Events   []*Event `json:"events"`
}

// DecodeEventRun reads a stored run, numbering its events from its first
// Seq.
func DecodeEventRun(r EventRow) ([]*Event, error) {
	var run []*Event
	if len(r.Body) > 0 && r.Body[0] == '{' {
		var sr sharedRun
		if err := json.Unmarshal(r.Body, &sr); err != nil {
			return nil, fmt.Errorf("event %d: %w", r.First, err)
		}
		for _, ev := range sr.Events {
			if ev != nil {
				ev.Time, ev.TaskID, ev.Namespace, ev.Workflow = r.Time, r.TaskID, r.Namespace, sr.Workflow
			}
		}
		run = sr.Events
	} else if err := json.Unmarshal(r.Body, &run); err != nil {
		return nil, fmt.Errorf("event %d: %w", r.First, err)
	}
	if len(run) == 0 {
		return nil, fmt.Errorf("event %d: a row without events", r.First)
	}
	for i, ev := range run {
		if ev == nil {
			return nil, fmt.Errorf("event %d: null in its row", r.First+int64(i))
		}
		ev.Seq = r.First + int64(i)
	}
	return run, nil
}

// AppendEventRows appends to out the events of a row read in Seq order that
// come after q.After, up to q's limit. A store selects the rows whose last
// Seq is above q.After, at most the limit of them (each holds at least one
// wanted event), and gives them here.
func AppendEventRows(out []*Event, q *EventQuery, r EventRow) ([]*Event, error) {
	run, err := DecodeEventRun(r)
	if err != nil {
		return out, err
	}
	for _, ev := range run {
		if ev.Seq > q.After && len(out) < q.LimitOrDefault() {
			out = append(out, ev)
		}
	}
	return out, nil
}

// LimitOrDefault is q.Limit, or DefaultEventLimit when it is not set.
func (q *EventQuery) LimitOrDefault() int {
	if q.Limit <= 0 {
		return DefaultEventLimit
	}
	return q.Limit
}

// EventsOfTasks is AppendEventRows for ListEventsOfTasks: rows read in
// (task, Seq) order, each task's events cut to the query's limit on its
// own. The zero value is ready to use.
type EventsOfTasks struct {
	task int64
	n    int // events of task appended so far
}

// Append appends to out the events of r after q.After, up to q's limit
// for r's task.
func (e *EventsOfTasks) Append(out []*Event, q *EventQuery, r EventRow) ([]*Event, error) {
	if r.TaskID != e.task {
		e.task, e.n = r.TaskID, 0
	}
	run, err := DecodeEventRun(r)
	if err != nil {
		return out, err
	}
	for _, ev := range run {
		if ev.Seq > q.After && e.n < q.LimitOrDefault() {
			out = append(out, ev)
			e.n++
		}
	}
	return out, nil
}
