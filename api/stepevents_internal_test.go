package api

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// stepEvents reads on, page after page, until it has one more of the
// step's events than asked for or the log ends; the first page may come
// already read.
func TestStepEventsReadsPagesUntilItHasEnough(t *testing.T) {
	// 20 events, seq 1..20; step "a" has seq 3, 9, 10, 17.
	var log []*backends.Event
	for seq := int64(1); seq <= 20; seq++ {
		name := "b"
		if seq == 3 || seq == 9 || seq == 10 || seq == 17 {
			name = "a"
		}
		log = append(log, &backends.Event{Seq: seq, StepName: name})
	}
	var reads []int64
	read := func(after int64, limit int) ([]*backends.Event, error) {
		reads = append(reads, after)
		var out []*backends.Event
		for _, ev := range log {
			if ev.Seq > after && len(out) < limit {
				out = append(out, ev)
			}
		}
		return out, nil
	}
	seqs := func(evs []*backends.Event) []int64 {
		out := []int64{}
		for _, ev := range evs {
			out = append(out, ev.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		q     taskEventQuery
		first []*backends.Event
		want  []int64
		reads []int64
	}{
		{"two and one more", taskEventQuery{Step: "a", Limit: 2}, nil, []int64{3, 9, 10}, []int64{0, 4, 8}},
		{"all of them: the log ends", taskEventQuery{Step: "a", Limit: 10}, nil, []int64{3, 9, 10, 17}, []int64{0, 4, 8, 12, 16, 20}},
		{"after", taskEventQuery{Step: "a", After: 9, Limit: 1}, nil, []int64{10, 17}, []int64{9, 13}},
		{"no step: every event", taskEventQuery{Limit: 5}, nil, []int64{1, 2, 3, 4, 5, 6}, []int64{0, 4}},
		{"a first page given", taskEventQuery{Step: "a", Limit: 1}, log[:4], []int64{3, 9}, []int64{4, 8}},
		{"a short first page is the end", taskEventQuery{Step: "a", Limit: 5}, log[:2], []int64{}, nil},
		{"no such step", taskEventQuery{Step: "zz", Limit: 5}, nil, []int64{}, []int64{0, 4, 8, 12, 16, 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reads = nil
			got, err := stepEvents(read, tc.q, 4, tc.first)
			require.NoError(t, err)
			require.Equal(t, tc.want, seqs(got))
			require.Equal(t, tc.reads, reads)
		})
	}

	boom := errors.New("database down")
	_, err := stepEvents(func(int64, int) ([]*backends.Event, error) { return nil, boom }, taskEventQuery{Step: "a", Limit: 1}, 4, nil)
	require.ErrorIs(t, err, boom)
}
