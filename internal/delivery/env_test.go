package delivery

import "testing"

// eachLog runs fn on every event log the reader is tested on.
func eachLog(t *testing.T, fn func(t *testing.T, env *logEnv)) {
	t.Helper()
	t.Run("mem", func(t *testing.T) {
		t.Parallel()
		fn(t, memEnv(t))
	})
}
