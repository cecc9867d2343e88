package sqlite

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/taskerd/taskerd/backends"
)

func TestUnavailableCodes(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]bool{
		sqlite3.SQLITE_FULL:              true,
		sqlite3.SQLITE_IOERR:             true,
		sqlite3.SQLITE_IOERR_WRITE:       true, // extended codes count by their primary
		sqlite3.SQLITE_IOERR_FSYNC:       true,
		sqlite3.SQLITE_IOERR_SHORT_READ:  true,
		sqlite3.SQLITE_CANTOPEN:          true,
		sqlite3.SQLITE_READONLY:          true,
		sqlite3.SQLITE_READONLY_DBMOVED:  true,
		sqlite3.SQLITE_BUSY:              true,
		sqlite3.SQLITE_CONSTRAINT:        false,
		sqlite3.SQLITE_CONSTRAINT_UNIQUE: false,
		sqlite3.SQLITE_ERROR:             false,
		sqlite3.SQLITE_MISMATCH:          false,
		sqlite3.SQLITE_CORRUPT:           false,
		sqlite3.SQLITE_INTERRUPT:         false,
	} {
		require.Equal(t, want, unavailableCode(code), "code %d", code)
	}
}

// limitPages makes writes that need a new page fail with SQLITE_FULL, as a
// full disk would; lift undoes it.
func limitPages(t *testing.T, s *Store) (lift func()) {
	t.Helper()
	require.NoError(t, SetMaxPageCount(context.Background(), s, 1))
	return func() { require.NoError(t, SetMaxPageCount(context.Background(), s, 4294967294)) }
}

// Store errors that mean "the database cannot be reached or written now"
// match backends.ErrUnavailable; the others keep their meaning and do not.
func TestClassification(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openFile(t, "?synchronous=normal")
	_, err := s.writer.Exec(`CREATE TABLE filler (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)`)
	require.NoError(t, err)
	insert := func(ctx context.Context, v string) error {
		return s.write(ctx, func(tx querier) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO filler (v) VALUES (?)`, v)
			return err
		})
	}

	// A full disk (SQLITE_FULL), through the writer: unavailable, and
	// WriteHealth reports it for 30 s.
	require.NoError(t, s.WriteHealth(ctx, time.Now()))
	lift := limitPages(t, s)
	err = insert(ctx, strings.Repeat("x", 64<<10))
	require.ErrorIs(t, err, backends.ErrUnavailable)
	var ue *backends.UnavailableError
	require.ErrorAs(t, err, &ue)
	require.Contains(t, err.Error(), "full")
	failedAt := time.Now()
	health := s.WriteHealth(ctx, failedAt)
	require.ErrorIs(t, health, backends.ErrUnavailable)
	require.Contains(t, health.Error(), "full")
	lift()
	require.NoError(t, insert(ctx, "fits"))
	require.Error(t, s.WriteHealth(ctx, failedAt.Add(29*time.Second)), "a success does not clear it: the last failure counts for 30 s")
	require.NoError(t, s.WriteHealth(ctx, failedAt.Add(31*time.Second)))

	// A statement's own error is not an outage, nor recorded as one.
	err = insert(ctx, "fits")
	require.Error(t, err)
	require.NotErrorIs(t, err, backends.ErrUnavailable)
	require.NoError(t, s.WriteHealth(ctx, failedAt.Add(31*time.Second)))
	_, err = s.GetTask(ctx, 12345)
	require.ErrorIs(t, err, backends.ErrNotFound)
	require.NotErrorIs(t, err, backends.ErrUnavailable)

	// The caller's deadline is (context.DeadlineExceeded stays in the
	// chain); its cancellation is not.
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	for name, err := range map[string]error{
		"write": insert(expired, "late"),
		"read":  func() error { _, err := s.ListSteps(expired, 1); return err }(),
		"rq":    func() error { _, err := s.GetTask(expired, 1); return err }(),
	} {
		require.ErrorIs(t, err, backends.ErrUnavailable, name)
		require.ErrorIs(t, err, context.DeadlineExceeded, name)
	}
	cancelled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	err = insert(cancelled, "gone")
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, backends.ErrUnavailable)

	// A closed store is unavailable.
	require.NoError(t, s.Close())
	require.ErrorIs(t, insert(ctx, "closed"), backends.ErrUnavailable)
}

// A caller waiting for the writer gives up at its deadline, even once the
// writer runs its operation (a frozen disk), and the operation is then not
// applied.
func TestWriteGivesUpAtDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openFile(t, "?synchronous=normal")
	_, err := s.writer.Exec(`CREATE TABLE marks (v TEXT NOT NULL)`)
	require.NoError(t, err)

	const deadline = 100 * time.Millisecond
	waitCtx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	releaseWriter := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseWriter) // before Close, even when the test fails
	begun := time.Now()
	answer := make(chan error, 1)
	go func() {
		answer <- s.write(waitCtx, func(tx querier) error {
			close(started)
			<-release // the writer is stuck in this operation
			_, err := tx.ExecContext(waitCtx, `INSERT INTO marks (v) VALUES ('late')`)
			return err
		})
	}()
	<-started
	select {
	case err := <-answer:
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, backends.ErrUnavailable)
		require.Less(t, time.Since(begun), deadline+2*time.Second)
	case <-time.After(10 * time.Second):
		t.Fatal("the write did not give up at its deadline")
	}
	releaseWriter()
	require.NoError(t, s.write(ctx, func(tx querier) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO marks (v) VALUES ('after')`)
		return err
	}))
	require.Equal(t, []string{"after"}, marks(t, s), "the abandoned operation was rolled back")
}

// An operation whose caller gives up while it runs is rolled back, alone
// (the lone transaction) or in a group (its savepoint): never committed
// behind the back of a caller that was told it failed.
func TestAbandonedOperationIsRolledBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openFile(t, "?synchronous=normal")
	_, err := s.writer.Exec(`CREATE TABLE marks (v TEXT NOT NULL)`)
	require.NoError(t, err)
	op := func(v string, abandon bool) *writeOp {
		opCtx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		return &writeOp{ctx: opCtx, done: make(chan error, 1), fn: func(tx querier) error {
			if _, err := tx.ExecContext(opCtx, `INSERT INTO marks (v) VALUES (?)`, v); err != nil {
				return err
			}
			if _, err := tx.ExecContext(opCtx, `INSERT INTO marks (v) VALUES (?)`, v+"-2"); err != nil {
				return err
			}
			if abandon {
				cancel() // the caller gives up while its operation runs
			}
			return nil
		}}
	}
	// runGroup is called directly (the writer loop is idle: nothing else
	// writes) so that the group is exactly this one.
	alone := op("alone", true)
	s.runGroup([]*writeOp{alone})
	require.ErrorIs(t, <-alone.done, context.Canceled)

	first, gone, last := op("first", false), op("gone", true), op("last", false)
	s.runGroup([]*writeOp{first, gone, last})
	require.NoError(t, <-first.done)
	require.ErrorIs(t, <-gone.done, context.Canceled)
	require.NoError(t, <-last.done)
	require.Equal(t, []string{"first", "first-2", "last", "last-2"}, marks(t, s))
}

func marks(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.writer.Query(`SELECT v FROM marks ORDER BY rowid`)
	require.NoError(t, err)
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v string
		require.NoError(t, rows.Scan(&v))
		got = append(got, v)
	}
	require.NoError(t, rows.Err())
	return got
}
