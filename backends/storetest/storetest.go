// Package storetest opens fresh stores of every backend for the tests that
// live outside the backends (the engine's scenarios, the API's, the plugin
// host's end-to-end runs), so that each of them runs on SQLite and on
// PostgreSQL from one list. The backends' own rules are checked by
// backendtest; this package only opens stores.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
	"github.com/taskerd/taskerd/backends/sqlite"
)

// Backend opens a fresh, empty store, closed when the test ends.
type Backend struct {
	Name string
	Open func(t testing.TB) backends.Store
}

// SQLite opens a file database in the test's temporary directory, with
// synchronous=normal (durability is not what these tests are about).
func SQLite(t testing.TB) backends.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "taskerd.db")+"?synchronous=normal")
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Postgres opens a database of the test's own (pgtest: skipped without a
// server unless TASKERD_REQUIRE_POSTGRES=1).
func Postgres(t testing.TB) backends.Store {
	t.Helper()
	return pgtest.Open(t)
}

// Backends lists every backend.
func Backends() []Backend {
	return []Backend{{Name: "sqlite", Open: SQLite}, {Name: "postgres", Open: Postgres}}
}

// Each runs fn as a parallel subtest per backend.
func Each(t *testing.T, fn func(t *testing.T, open func(t testing.TB) backends.Store)) {
	t.Helper()
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.Open)
		})
	}
}
