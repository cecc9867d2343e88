package backends

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// How the stores keep the log: one row per run of events. A write's events
// come grouped by task (ClaimEvents and the other builders keep a task's
// events together), and one task's consecutive events get consecutive Seqs,
// so a store writes each run as one row: its first Seq, its last Seq, the
// task and namespace readers filter on, and the events as one JSON array
// without their Seqs (event i of a row is first+i). One row instead of
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

// EncodeEventRun is a run's stored body, its events without their Seqs.
// What every event of a run shares (the write's instant, the task, its
// namespace and workflow: always, for the runs the builders make) is
// written once: {"timestamp":…,"task_id":…,"namespace":…,"workflow":…,
// "events":[…]}, each event without those four, a third of a claim's
// bytes. A run whose events differ in them is a plain JSON array of the
// events. The events are encoded as they are; a store sets their Time to
// its own precision first, so that what its sink hands out is what it
// will read back.
func EncodeEventRun(run []*Event) ([]byte, error) {
	b := make([]byte, 0, 160*len(run)+128)
	first := run[0]
	shared := true
	for _, ev := range run[1:] {
		if !ev.Time.Equal(first.Time) || ev.Time.Location() != first.Time.Location() || ev.TaskID != first.TaskID ||
			ev.Namespace != first.Namespace || ev.Workflow != first.Workflow {
			shared = false
			break
		}
	}
	var err error
	if shared {
		b = append(b, `{"timestamp":`...)
		if b, err = appendJSONTime(b, first.Time); err != nil {
			return nil, fmt.Errorf("encoding the events of task %d: %w", first.TaskID, err)
		}
		b = append(b, `,"task_id":`...)
		b = strconv.AppendInt(b, first.TaskID, 10)
		b = append(b, `,"namespace":`...)
		b = appendJSONString(b, first.Namespace, true)
		b = append(b, `,"workflow":`...)
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

// sharedRun is the stored form of a run whose events share their instant
// and task (EncodeEventRun).
type sharedRun struct {
	Time      time.Time `json:"timestamp"`
	TaskID    int64     `json:"task_id"`
	Namespace string    `json:"namespace"`
	Workflow  string    `json:"workflow"`
	Events    []*Event  `json:"events"`
}

// DecodeEventRun reads a stored run whose first event is first, numbering
// its events from there.
func DecodeEventRun(first int64, body []byte) ([]*Event, error) {
	var run []*Event
	if len(body) > 0 && body[0] == '{' {
		var sr sharedRun
		if err := json.Unmarshal(body, &sr); err != nil {
			return nil, fmt.Errorf("event %d: %w", first, err)
		}
		for _, ev := range sr.Events {
			if ev != nil {
				ev.Time, ev.TaskID, ev.Namespace, ev.Workflow = sr.Time, sr.TaskID, sr.Namespace, sr.Workflow
			}
		}
		run = sr.Events
	} else if err := json.Unmarshal(body, &run); err != nil {
		return nil, fmt.Errorf("event %d: %w", first, err)
	}
	if len(run) == 0 {
		return nil, fmt.Errorf("event %d: a row without events", first)
	}
	for i, ev := range run {
		if ev == nil {
			return nil, fmt.Errorf("event %d: null in its row", first+int64(i))
		}
		ev.Seq = first + int64(i)
	}
	return run, nil
}

// AppendEventRows appends to out the events of rows read in Seq order (each
// row's first Seq and body) that come after q.After, up to q's limit. A
// store selects the rows whose last Seq is above q.After, at most the limit
// of them (each holds at least one wanted event), and gives them here.
func AppendEventRows(out []*Event, q *EventQuery, first int64, body []byte) ([]*Event, error) {
	run, err := DecodeEventRun(first, body)
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
