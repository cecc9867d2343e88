package delivery

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
	"github.com/taskerd/taskerd/backends/sqlite"
)

// eachLog runs fn, in parallel subtests, on every event log the readers
// are tested on: the in-memory fake, SQLite and PostgreSQL (a database of
// the test's own).
func eachLog(t *testing.T, fn func(t *testing.T, env *logEnv)) {
	t.Helper()
	for _, b := range []struct {
		name string
		env  func(t *testing.T) *logEnv
	}{{"mem", memEnv}, {"sqlite", sqliteEnv}, {"postgres", postgresEnv}} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.env(t))
		})
	}
}

func sqliteEnv(t *testing.T) *logEnv {
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "taskerd.db") + "?synchronous=normal"
	return storeEnv(t, func(t *testing.T) backends.Store {
		s, err := sqlite.Open(context.Background(), dsn)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func postgresEnv(t *testing.T) *logEnv {
	dsn := pgtest.NewDatabase(t)
	return storeEnv(t, func(t *testing.T) backends.Store {
		s, err := postgres.Open(context.Background(), dsn, postgres.WithoutMigrate())
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// storeEnv is the log of a real database; open opens a store on it (a
// node). An event is written by creating a task (its
// task.initialize_requested).
func storeEnv(t *testing.T, open func(t *testing.T) backends.Store) *logEnv {
	s := open(t)
	ctx := context.Background()
	return &logEnv{
		store: s,
		write: func(t *testing.T, ns string) int64 {
			t.Helper()
			before, err := s.LastEventSeq(ctx)
			require.NoError(t, err)
			_, _, err = s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: ns, WorkflowName: "wf", WorkflowVersion: "0.1.0",
				Steps: []backends.NewStep{{Name: "a", Handler: "builtin.noop", RetryLimit: 1, BackoffBase: time.Second, BackoffMax: time.Second, Timeout: time.Second}},
				Now:   time.Now().UTC()})
			require.NoError(t, err)
			seq, err := s.LastEventSeq(ctx)
			require.NoError(t, err)
			require.Equal(t, before+1, seq, "a task's creation writes one event")
			return seq
		},
		another: func(t *testing.T) backends.EventStore { return open(t) },
	}
}
