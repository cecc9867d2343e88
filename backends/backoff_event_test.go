package backends

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoffEvent(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Step{ID: 1, TaskID: 2, Name: "x", Attempts: 2, RetryLimit: 3, State: StateError,
		BackoffBase: time.Second, BackoffMax: 30 * time.Second, LastFailureAt: &at, LastAttemptedAt: &at}
	ev := backoffEvent(at, s)
	require.NotNil(t, ev)
	require.Equal(t, BackoffExponential, ev.BackoffKind)
	require.Equal(t, 4.0, ev.BackoffSeconds)
	require.Equal(t, at.Add(4*time.Second), *ev.NextRetryAt)

	req := 120
	s.BackoffRequestSeconds = &req
	ev = backoffEvent(at.Add(time.Second), s)
	require.Equal(t, BackoffRequested, ev.BackoffKind)
	require.Equal(t, 119.0, ev.BackoffSeconds)
}
