package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskerd/taskerd/backends"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations lists the embedded migrations in version order.
func migrations() ([]backends.Migration, error) {
	return backends.ReadMigrations(migrationFiles, "migrations")
}

// LatestSchemaVersion is the schema version this binary writes.
func LatestSchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		panic(err)
	}
	return len(ms)
}

// MigrationsHash identifies the embedded migrations' text (for test
// templates: a database migrated by other migrations is another template).
func MigrationsHash() string {
	ms, err := migrations()
	if err != nil {
		panic(err)
	}
	var h uint64 = 14695981039346656037 // FNV-1a
	for _, m := range ms {
		for i := 0; i < len(m.SQL); i++ {
			h = (h ^ uint64(m.SQL[i])) * 1099511628211
		}
	}
	return strconv.FormatUint(h, 36)
}

// migrationLock is the pg_advisory_lock key migrators take ("taskerd" in
// ASCII): two processes migrating one database at once run one after the
// other, and the second finds nothing left to do.
const migrationLock int64 = 0x7461736b657264

const createVersionTable = `CREATE TABLE IF NOT EXISTS taskerd_schema_migrations (
	version    integer     PRIMARY KEY,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// Migrate connects to the database dsn names, applies the migrations it
// lacks and returns their names (none when it was up to date). A database
// newer than this binary is refused.
func Migrate(ctx context.Context, dsn string, opts ...Option) ([]string, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := poolConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("migrating %s: %w", Redact(dsn), err)
	}
	defer pool.Close()
	if err := waitForServer(ctx, pool, o.wait); err != nil {
		return nil, fmt.Errorf("migrating %s: %w", Redact(dsn), err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrating %s: %w", Redact(dsn), err)
	}
	defer conn.Release()
	applied, err := migrate(ctx, conn.Conn())
	if err != nil {
		return applied, fmt.Errorf("migrating %s: %w", Redact(dsn), err)
	}
	return applied, nil
}

// migrate applies the missing migrations under the migration lock, each in
// its own transaction together with its row in taskerd_schema_migrations.
func migrate(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	return migrateTo(ctx, conn, 0)
}

// migrateTo is migrate up to version target (every migration when target is
// 0): the tests of a migration build a database at the version before it.
func migrateTo(ctx context.Context, conn *pgx.Conn, target int) (applied []string, err error) {
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	defer func() {
		// The lock is the session's: release it even if ctx is done, or
		// the pooled connection would keep it.
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock); uerr != nil && err == nil {
			err = fmt.Errorf("releasing the migration lock: %w", uerr)
		}
	}()
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, createVersionTable); err != nil {
		return nil, fmt.Errorf("creating the schema version table: %w", err)
	}
	current, err := schemaVersion(ctx, conn)
	if err != nil {
		return nil, err
	}
	if current > len(ms) {
		return nil, newerSchemaError(current, len(ms))
	}
	if target == 0 || target > len(ms) {
		target = len(ms)
	}
	for _, m := range ms[min(current, target):target] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("applying migration %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO taskerd_schema_migrations (version, name) VALUES ($1, $2)`,
				m.Version, m.Name); err != nil {
				return fmt.Errorf("recording migration %s: %w", m.Name, err)
			}
			return nil
		})
		if err != nil {
			return applied, err
		}
		applied = append(applied, m.Name)
	}
	return applied, nil
}

func newerSchemaError(current, known int) error {
	return fmt.Errorf("database schema version %d is newer than this taskerd knows (%d): upgrade taskerd", current, known)
}

// schemaVersion reads the highest applied migration; 0 for a database
// without the version table.
func schemaVersion(ctx context.Context, conn *pgx.Conn) (int, error) {
	var v int
	err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM taskerd_schema_migrations`).Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the schema version: %w", err)
	}
	return v, nil
}

// checkSchema is Open's check under WithoutMigrate: the database must be at
// exactly this binary's version.
func checkSchema(ctx context.Context, conn *pgx.Conn) error {
	v, err := schemaVersion(ctx, conn)
	if err != nil {
		return err
	}
	latest := LatestSchemaVersion()
	switch {
	case v > latest:
		return newerSchemaError(v, latest)
	case v < latest:
		return fmt.Errorf("database schema version %d is older than this taskerd's (%d) and migrations are disabled: run taskerd migrate", v, latest)
	}
	return nil
}

// CheckSchema reports whether the database is at exactly this binary's
// schema version (readiness: another node may have migrated it since).
func (s *Store) CheckSchema(ctx context.Context) (rerr error) {
	defer classifyErr(&rerr)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return checkSchema(ctx, conn.Conn())
}
