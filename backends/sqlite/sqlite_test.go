package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/backendtest"
	"github.com/taskerd/taskerd/engine"
)

func TestStore(t *testing.T) {
	t.Parallel()
	backendtest.Run(t, func(t *testing.T) backends.Store {
		s, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "taskerd.db")+"?synchronous=normal")
		require.NoError(t, err)
		return s
	})
}

// The suite passes on an in-memory database too (one connection, see Store).
func TestStoreInMemory(t *testing.T) {
	t.Parallel()
	if testing.Short() || raceEnabled {
		t.Skip("the file-backed run covers the same rules (and -race makes this one slow)")
	}
	backendtest.Run(t, func(t *testing.T) backends.Store {
		s, err := Open(context.Background(), "sqlite::memory:")
		require.NoError(t, err)
		return s
	})
}

func openFile(t *testing.T, dsnSuffix string) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "taskerd.db")
	s, err := Open(context.Background(), "sqlite:"+path+dsnSuffix)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, path
}

func pragmaOf(t *testing.T, q querier, name string) string {
	t.Helper()
	var v string
	require.NoError(t, q.QueryRowContext(context.Background(), "PRAGMA "+name).Scan(&v))
	return v
}

func TestParseDSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		dsn     string
		want    dsnConfig
		wantErr string
	}{
		{dsn: "sqlite:taskerd.db", want: dsnConfig{path: "taskerd.db", synchronous: "FULL"}},
		{dsn: "sqlite:/var/lib/taskerd/t.db?synchronous=normal", want: dsnConfig{path: "/var/lib/taskerd/t.db", synchronous: "NORMAL"}},
		{dsn: "sqlite::memory:", want: dsnConfig{memory: true, synchronous: "FULL"}},
		{dsn: "sqlite::memory:?synchronous=NORMAL", want: dsnConfig{memory: true, synchronous: "NORMAL"}},
		{dsn: "postgres://x", wantErr: "want sqlite:PATH"},
		{dsn: "taskerd.db", wantErr: "want sqlite:PATH"},
		{dsn: "sqlite:", wantErr: "empty database path"},
		{dsn: "sqlite:?synchronous=full", wantErr: "empty database path"},
		{dsn: "sqlite:x.db?synchronous=sometimes", wantErr: "want off, normal, full or extra"},
		{dsn: "sqlite:x.db?journal=wal", wantErr: `unknown parameter "journal"`},
		{dsn: "sqlite:x.db?synchronous=full&synchronous=normal", wantErr: "given 2 times"},
		{dsn: "sqlite:file:x.db", wantErr: "not a file: URI"},
		{dsn: "sqlite:x.db?%zz", wantErr: "invalid URL escape"},
	} {
		got, err := parseDSN(tc.dsn)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.dsn)
			continue
		}
		require.NoError(t, err, tc.dsn)
		require.Equal(t, tc.want, got, tc.dsn)
	}
	_, err := Open(context.Background(), "mysql://nope")
	require.ErrorContains(t, err, "want sqlite:PATH")
}

func TestPragmas(t *testing.T) {
	t.Parallel()
	full, _ := openFile(t, "")
	normal, _ := openFile(t, "?synchronous=normal")
	// synchronous: 2 = FULL (the default, for edge power loss), 1 = NORMAL.
	require.Equal(t, "2", pragmaOf(t, full.writer, "synchronous"))
	require.Equal(t, "2", pragmaOf(t, full.reader, "synchronous"))
	require.Equal(t, "1", pragmaOf(t, normal.writer, "synchronous"))
	for _, s := range []*Store{full, normal} {
		for _, q := range []querier{s.writer, s.reader} {
			require.Equal(t, "wal", pragmaOf(t, q, "journal_mode"))
			require.Equal(t, "1", pragmaOf(t, q, "foreign_keys"))
			require.Equal(t, "10000", pragmaOf(t, q, "busy_timeout"))
			require.Equal(t, "2", pragmaOf(t, q, "temp_store"), "2 = MEMORY")
		}
		require.Equal(t, "1", pragmaOf(t, s.reader, "query_only"))
		require.Equal(t, 1, s.writer.Stats().MaxOpenConnections)
	}
	mem, err := Open(context.Background(), "sqlite::memory:")
	require.NoError(t, err)
	defer mem.Close()
	require.Equal(t, "1", pragmaOf(t, mem.writer, "foreign_keys"))
	require.Equal(t, "2", pragmaOf(t, mem.writer, "temp_store"))
	require.Same(t, mem.writer, mem.reader)
}

func TestMigrationVersionTable(t *testing.T) {
	t.Parallel()
	s, _ := openFile(t, "?synchronous=normal")
	var version int
	var name string
	require.NoError(t, s.writer.QueryRow(`SELECT version, name FROM taskerd_schema_migrations ORDER BY version DESC LIMIT 1`).Scan(&version, &name))
	require.Equal(t, LatestSchemaVersion(), version)
	require.Equal(t, "0011_schedule_firings_created.sql", name)
	// Opening again applies nothing twice.
	require.NoError(t, s.migrate(context.Background()))
	var n int
	require.NoError(t, s.writer.QueryRow(`SELECT count(*) FROM taskerd_schema_migrations`).Scan(&n))
	require.Equal(t, LatestSchemaVersion(), n)
}

func TestRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	s, path := openFile(t, "?synchronous=normal")
	_, err := s.writer.Exec(`INSERT INTO taskerd_schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', 0)`)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = Open(context.Background(), "sqlite:"+path)
	require.ErrorContains(t, err, "database schema version 999 is newer than this taskerd knows")
}

func TestDataSurvivesReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, path := openFile(t, "")
	now := time.Date(2030, 1, 1, 0, 0, 0, 1000, time.UTC)
	task, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w", WorkflowVersion: "0.1.0",
		Steps: []backends.NewStep{{Name: "a", Handler: "builtin.noop", Retryable: true, RetryLimit: 3, BackoffBase: time.Second, BackoffMax: time.Minute}},
		Now:   now})
	require.NoError(t, err)
	cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: 1, LeaseDuration: time.Minute, Now: now})
	require.NoError(t, err)
	require.Len(t, cs, 1)
	before, err := s.ListSteps(ctx, task.ID)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s2, err := Open(ctx, "sqlite:"+path)
	require.NoError(t, err)
	defer s2.Close()
	after, err := s2.ListSteps(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, before, after)
	got, err := s2.GetTask(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, backends.StateInProgress, got.State)
}

func TestTimesTruncatedToMicroseconds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openFile(t, "?synchronous=normal")
	now := time.Date(2030, 1, 1, 0, 0, 0, 123456789, time.FixedZone("X", 3600))
	task, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w", WorkflowVersion: "0.1.0", Now: now})
	require.NoError(t, err)
	require.Equal(t, now.UTC().Truncate(time.Microsecond), task.CreatedAt)
	require.Equal(t, time.UTC, task.CreatedAt.Location())
}

// The failure backoff in sql/readiness.sql against engine.Backoff, over the
// whole range the definition allows (base >= 1ms, max <= 24h) and attempt
// counts far past 40, which Store operations alone would take long to reach.
func TestFailureBackoffMatchesEngine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openFile(t, "?synchronous=normal")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	task, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w", WorkflowVersion: "0.1.0",
		Steps: []backends.NewStep{{Name: "a", Handler: "builtin.noop", Retryable: true, RetryLimit: 1000, BackoffBase: time.Second, BackoffMax: time.Second}},
		Now:   now})
	require.NoError(t, err)
	durations := []time.Duration{time.Millisecond, 7 * time.Millisecond, time.Second, 30 * time.Second, 17 * time.Minute, 24 * time.Hour}
	for _, base := range durations {
		for _, maxB := range durations {
			for attempts := 0; attempts <= 70; attempts++ {
				_, err := s.writer.Exec(`UPDATE steps SET state = 'error', attempts = ?, last_failure_at = ?,
					backoff_base_us = ?, backoff_max_us = ? WHERE task_id = ?`,
					attempts, micros(now), base.Microseconds(), maxB.Microseconds(), task.ID)
				require.NoError(t, err)
				rows, err := s.StepReadiness(ctx, task.ID, now)
				require.NoError(t, err)
				want := now.Add(engine.Backoff(base, maxB, attempts))
				require.Equal(t, want, *rows[0].NextRetryAt, "base %s max %s attempts %d", base, maxB, attempts)
			}
		}
	}
}

// rewindTo0002 gives a database the shape migration 0002 left it in: a
// stored most_recent flag on every transition, kept exact, and no settings.
func rewindTo0002(t *testing.T, s *Store) {
	t.Helper()
	_, err := s.writer.Exec(`DROP TABLE schedule_firings;
		DROP TABLE schedules;
		DROP TABLE event_dead_letters;
		DROP TABLE event_cursors;
		DROP TABLE events;
		DROP TABLE event_seq;
		DROP TABLE api_key_events;
		DROP TABLE api_keys;
		DROP TABLE taskerd_settings;
		DROP TABLE task_namespaces;
		ALTER TABLE transitions ADD COLUMN most_recent INTEGER NOT NULL DEFAULT 0;
		UPDATE transitions SET most_recent = (sort_key = (SELECT max(sort_key) FROM transitions o
			WHERE o.task_id = transitions.task_id AND o.step_id IS transitions.step_id));
		CREATE UNIQUE INDEX transitions_step_most_recent ON transitions (step_id) WHERE step_id IS NOT NULL AND most_recent = 1;
		CREATE UNIQUE INDEX transitions_task_most_recent ON transitions (task_id) WHERE step_id IS NULL AND most_recent = 1;
		DELETE FROM taskerd_schema_migrations WHERE version > 2`)
	require.NoError(t, err)
}

// Migration 0003 drops the stored most_recent flag; the trail reads the same
// before and after, and new transitions number on from the old ones.
func TestMigration0003KeepsTheTrail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, path := openFile(t, "?synchronous=normal")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	task, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w",
		WorkflowVersion: "0.1.0", Steps: backendtest.RandomDAG(8, 2), Now: now})
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: 1, LeaseDuration: time.Minute, Now: now})
		require.NoError(t, err)
		require.Len(t, cs, 1)
		_, err = s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: cs[0].Step.ID, LeaseToken: cs[0].Step.LeaseToken, Now: now})
		require.NoError(t, err)
	}
	before, err := s.ListTransitions(ctx, task.ID)
	require.NoError(t, err)
	rewindTo0002(t, s)
	var stored int
	require.NoError(t, s.writer.QueryRow(`SELECT count(*) FROM transitions WHERE most_recent = 1`).Scan(&stored))
	require.Equal(t, 1+3, stored, "one most recent row for the task and each step that moved")
	require.NoError(t, s.Close())

	s2, err := Open(ctx, "sqlite:"+path+"?synchronous=normal")
	require.NoError(t, err)
	defer s2.Close()
	after, err := s2.ListTransitions(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, before, after)
	// Migration 0005 noted the namespaces of the tasks already there.
	namespaces, err := s2.TaskNamespaces(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"default"}, namespaces)

	// A new transition of the task is numbered after the old ones and is
	// the only most recent one of the task.
	_, err = s2.CancelTask(ctx, &backends.CancelTaskParams{TaskID: task.ID, Now: now})
	require.NoError(t, err)
	trail, err := s2.ListTransitions(ctx, task.ID)
	require.NoError(t, err)
	var keys []int
	var recent []bool
	for _, tr := range trail {
		if tr.StepID == 0 {
			keys = append(keys, tr.SortKey)
			recent = append(recent, tr.MostRecent)
		}
	}
	require.Equal(t, []int{1, 2, 3}, keys, "created, started, cancelled")
	require.Equal(t, []bool{false, false, true}, recent)
}

func TestCheckSchema(t *testing.T) {
	t.Parallel()
	s, _ := openFile(t, "?synchronous=normal")
	require.NoError(t, s.CheckSchema(context.Background()))
	_, err := s.writer.Exec(`INSERT INTO taskerd_schema_migrations (version, name, applied_at) VALUES (999, 'x', 0)`)
	require.NoError(t, err)
	require.ErrorContains(t, s.CheckSchema(context.Background()), "database schema version 999")
}
