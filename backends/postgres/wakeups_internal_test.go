package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// Writes notify in their own transactions while the bucket has tokens;
// the writes committed while it is empty are folded into one notification
// sent when the next token comes, carrying their earliest instant, and
// never before they committed.
func TestNotificationsAreRateLimitedWithATrailingEdge(t *testing.T) {
	t.Parallel()
	sent := make(chan string, 10)
	var (
		mu    sync.Mutex
		clock = time.Now()
	)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	n := &notifier{id: "me", clock: now, send: func(_ context.Context, p string) error { sent <- p; return nil }}
	t.Cleanup(n.close)

	for i := range notifyBurst {
		w := n.noteAt(time.Time{})
		require.True(t, w.lead, "write %d of a burst notifies in its transaction", i+1)
		w.committed() // sent in its transaction: nothing more
	}
	later := time.Now().Add(time.Hour)
	soon := time.Now().Add(time.Minute)
	w1, w2 := n.noteAt(later), n.noteAt(soon)
	require.False(t, w1.lead)
	require.False(t, w2.lead)
	select {
	case p := <-sent:
		t.Fatalf("sent %q before the folded writes committed", p)
	case <-time.After(3 * notifyInterval):
	}
	w1.committed()
	w2.committed()
	mu.Lock()
	clock = clock.Add(notifyInterval) // the next token
	mu.Unlock()
	select {
	case p := <-sent:
		sender, at, err := parseWake(p)
		require.NoError(t, err)
		require.Equal(t, "me", sender)
		require.Equal(t, soon.UnixMicro(), at.UnixMicro(), "the earliest instant of the folded writes")
	case <-time.After(10 * time.Second):
		t.Fatal("no trailing notification")
	}
	require.False(t, n.noteAt(time.Time{}).lead, "the trailing notification spent the token")
	mu.Lock()
	clock = clock.Add(notifyInterval)
	mu.Unlock()
	require.True(t, n.noteAt(time.Time{}).lead, "the bucket fills again")
	select {
	case p := <-sent:
		t.Fatalf("a second trailing notification %q", p)
	default:
	}
}

func TestWakePayloads(t *testing.T) {
	t.Parallel()
	n := &notifier{id: "0123abcd"}
	at := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	for _, in := range []time.Time{{}, at} {
		sender, got, err := parseWake(n.payload(in))
		require.NoError(t, err)
		require.Equal(t, "0123abcd", sender)
		require.True(t, in.Equal(got), "%v != %v", in, got)
	}
	for _, bad := range []string{"", "x", " 12", "x -1", "x y"} {
		_, _, err := parseWake(bad)
		require.Error(t, err, bad)
	}
}

// A write announces the instant its work is claimable; a claim or a
// failure that blocks announces nothing.
func TestNoteFollowsTheEvents(t *testing.T) {
	t.Parallel()
	n := &notifier{id: "x"}
	now := time.Now()
	retry := now.Add(3 * time.Second)
	require.Nil(t, n.note([]*backends.Event{{Type: backends.EventStepExecutionRequested, TaskID: 1}}, now))
	w := n.note([]*backends.Event{{Type: backends.EventStepFailed, TaskID: 1}, {Type: backends.EventStepBackoff, TaskID: 1, NextRetryAt: &retry}}, now)
	require.NotNil(t, w)
	require.True(t, w.at.Equal(retry))
	w = n.note([]*backends.Event{{Type: backends.EventTaskInitializeRequested, TaskID: 2}}, now)
	require.NotNil(t, w)
	require.True(t, w.at.IsZero(), "at once")
}

// Clusters in two schemas of one database have channels of their own.
func TestWakeChannelIsPerSchema(t *testing.T) {
	t.Parallel()
	a, b := wakeChannel("public"), wakeChannel("taskerd_bench_1_abcd")
	require.NotEqual(t, a, b)
	require.Equal(t, a, wakeChannel("public"))
	require.LessOrEqual(t, len(wakeChannel(string(make([]byte, 200)))), 63)
}
