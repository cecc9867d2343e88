// Package pgtest gives each test its own PostgreSQL database, so that test
// packages and parallel tests share one server without seeing each other's
// rows.
//
// TASKERD_TEST_POSTGRES_DSN names the server (default DefaultDSN). The first
// test of a process makes sure a template database migrated by this
// binary's migrations exists (named after their hash, created under an
// advisory lock since several test processes run at once); every test then
// gets CREATE DATABASE taskerd_t_<random> TEMPLATE <it>, dropped when the
// test ends.
//
// Without a server the tests skip, with one line saying how to enable them;
// with TASKERD_REQUIRE_POSTGRES=1 (CI sets it) a missing server fails them.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends/postgres"
)

// DefaultDSN is the server the tests use when TASKERD_TEST_POSTGRES_DSN is
// not set: the one .ci/run starts.
const DefaultDSN = "postgres://root@127.0.0.1:5432/test?sslmode=disable"

// ServerDSN is the DSN of the test server's maintenance database.
func ServerDSN() string {
	if v := os.Getenv("TASKERD_TEST_POSTGRES_DSN"); v != "" {
		return v
	}
	return DefaultDSN
}

// Required reports whether a missing server fails the tests
// (TASKERD_REQUIRE_POSTGRES=1) instead of skipping them.
func Required() bool { return os.Getenv("TASKERD_REQUIRE_POSTGRES") == "1" }

// templateLock is the advisory lock key (in the maintenance database) that
// serializes template creation across test processes; CREATE DATABASE from
// the template takes it shared, so no copy starts while a process migrates
// the template (a connected template cannot be copied).
const templateLock int64 = 0x74706c74706c // "tpltpl"

var (
	mu       sync.Mutex
	template string // set once the template is ready
	down     error  // the server did not answer: skip the rest at once
)

// connectAdmin connects to the maintenance database, or skips (or fails)
// the test when the server does not answer.
func connectAdmin(t testing.TB) *pgx.Conn {
	t.Helper()
	mu.Lock()
	err := down
	mu.Unlock()
	var conn *pgx.Conn
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err = pgx.Connect(ctx, ServerDSN())
		if err != nil {
			mu.Lock()
			down = err
			mu.Unlock()
		}
	}
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL not reachable at %s (%v); start it or set TASKERD_TEST_POSTGRES_DSN (TASKERD_REQUIRE_POSTGRES=1 makes this a failure)",
			postgres.Redact(ServerDSN()), err)
		if Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return conn
}

// DatabaseDSN is the server DSN with its database replaced by name.
func DatabaseDSN(t testing.TB, name string) string {
	t.Helper()
	u, err := url.Parse(ServerDSN())
	require.NoError(t, err, "TASKERD_TEST_POSTGRES_DSN must be a postgres:// URL")
	u.Path = "/" + name
	return u.String()
}

// ensureTemplate creates and migrates the template database once per
// process (and, thanks to the lock, once per server for every process that
// follows).
func ensureTemplate(t testing.TB, ctx context.Context, admin *pgx.Conn) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if template != "" {
		return template
	}
	name := "taskerd_tpl_" + postgres.MigrationsHash()
	_, err := admin.Exec(ctx, `SELECT pg_advisory_lock($1)`, templateLock)
	require.NoError(t, err)
	defer admin.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, templateLock)
	var exists bool
	require.NoError(t, admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists))
	if !exists {
		_, err := admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
		require.NoError(t, err)
	}
	// Always: this also finishes a template whose creator died half way.
	_, err = postgres.Migrate(ctx, DatabaseDSN(t, name))
	require.NoError(t, err, "migrating the template database %s", name)
	template = name
	return name
}

// NewEmptyDatabase creates a database without taskerd's schema for this
// test (for migration tests), dropped when the test ends, and returns its
// DSN.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	admin := connectAdmin(t)
	defer admin.Close(ctx)
	return createDatabase(t, ctx, admin, "")
}

// NewDatabase creates an empty, migrated database for this test, dropped
// when the test ends, and returns its DSN.
func NewDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	admin := connectAdmin(t)
	defer admin.Close(ctx)
	return createDatabase(t, ctx, admin, ensureTemplate(t, ctx, admin))
}

// createDatabase creates a database for this test, a copy of tpl (or of
// the server's default template when tpl is ""), and drops it when the test
// ends.
func createDatabase(t testing.TB, ctx context.Context, admin *pgx.Conn, tpl string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "taskerd_t_" + hex.EncodeToString(b[:])
	_, err := admin.Exec(ctx, `SELECT pg_advisory_lock_shared($1)`, templateLock)
	require.NoError(t, err)
	create := `CREATE DATABASE ` + pgx.Identifier{name}.Sanitize()
	if tpl != "" {
		create += ` TEMPLATE ` + pgx.Identifier{tpl}.Sanitize() + ` STRATEGY FILE_COPY`
	}
	_, err = admin.Exec(ctx, create)
	_, uerr := admin.Exec(ctx, `SELECT pg_advisory_unlock_shared($1)`, templateLock)
	require.NoError(t, err, "creating test database %s", name)
	require.NoError(t, uerr)
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, ServerDSN())
		if err != nil {
			t.Logf("dropping test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			t.Logf("dropping test database %s: %v", name, err)
		}
	})
	return DatabaseDSN(t, name)
}

// Open opens a Store on a new database of its own (NewDatabase), closed
// when the test ends.
func Open(t testing.TB, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	dsn := NewDatabase(t)
	s, err := postgres.Open(context.Background(), dsn, append([]postgres.Option{postgres.WithoutMigrate()}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}
