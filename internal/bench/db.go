package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/sqlite"
)

// DefaultDSN is the database when none is named: a throwaway SQLite file
// (in a temporary directory, removed afterwards) with synchronous=normal.
// "sqlite:?PARAMS" is a throwaway file with other parameters.
const DefaultDSN = "sqlite:?synchronous=normal"

// UsageError says the database cannot be used as asked: a DSN that names
// no database taskerd has, or a database that holds data (unless Force).
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &UsageError{msg: fmt.Sprintf(format, args...)}
}

// Database is where a bench runs: a store, and what to undo afterwards.
type Database struct {
	Store backends.Store
	// Kind is "sqlite" or "postgres".
	Kind string
	// Synchronous is SQLite's synchronous setting ("normal", "full"...);
	// "" for PostgreSQL.
	Synchronous string
	// Where says in a few words what the database is, for people.
	Where string

	cleanup func() error
	// openAnother opens another store on the same database, for another
	// node (Options.Nodes); nil when the database has a single node
	// (SQLite).
	openAnother func(ctx context.Context) (backends.Store, error)
}

// Close closes the store and removes what Open created for the bench: the
// throwaway SQLite file's directory, or the PostgreSQL schema.
func (d *Database) Close() error {
	err := d.Store.Close()
	if d.cleanup != nil {
		err = errors.Join(err, d.cleanup())
	}
	return err
}

// OpenDatabase opens the database dsn names for a bench ("" is DefaultDSN):
//
//   - sqlite: with no path (sqlite:?PARAMS): a throwaway file in a new
//     temporary directory, removed by Close;
//   - sqlite:PATH, sqlite::memory:: that database, kept;
//   - postgres://...: a schema of its own (taskerd_bench_PID_RANDOM),
//     created in the database and dropped with everything in it by Close,
//     unless the DSN names one (search_path=NAME): that one is used (and
//     created if missing) and kept.
//
// A database that already holds tasks (for PostgreSQL: in the schema the
// DSN's search path finds, whichever schema the bench then uses), or a
// SQLite file that holds tables and is not a taskerd database, is refused
// with a *UsageError unless force: a bench there would compete with its
// work, or write into someone else's file.
func OpenDatabase(ctx context.Context, dsn string, force bool) (*Database, error) {
	if dsn == "" {
		dsn = DefaultDSN
	}
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		return openSQLite(ctx, dsn, force)
	case postgres.IsDSN(dsn):
		return openPostgres(ctx, dsn, force)
	default:
		return nil, usageErrorf("--db %q: want sqlite:PATH, sqlite:?synchronous=..., sqlite::memory: or postgres://USER@HOST:PORT/DB", postgres.Redact(dsn))
	}
}

func openSQLite(ctx context.Context, dsn string, force bool) (*Database, error) {
	path, query, _ := strings.Cut(strings.TrimPrefix(dsn, "sqlite:"), "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, usageErrorf("--db %s: %s", dsn, err)
	}
	d := &Database{Kind: "sqlite", Synchronous: strings.ToLower(q.Get("synchronous"))}
	if d.Synchronous == "" {
		d.Synchronous = "full" // the store's default
	}
	switch path {
	case "":
		dir, err := os.MkdirTemp("", "taskerd-bench-")
		if err != nil {
			return nil, err
		}
		d.cleanup = func() error { return os.RemoveAll(dir) }
		dsn = "sqlite:" + filepath.Join(dir, "bench.db")
		if query != "" {
			dsn += "?" + query
		}
		d.Where = "throwaway SQLite file, synchronous=" + d.Synchronous
	case ":memory:":
		d.Where = "SQLite in memory"
	default:
		if !force {
			if err := checkSQLiteFile(ctx, path); err != nil {
				return nil, err
			}
		}
		d.Where = "SQLite file " + path + ", synchronous=" + d.Synchronous
	}
	s, err := sqlite.Open(ctx, dsn)
	if err != nil {
		if d.cleanup != nil {
			_ = d.cleanup()
		}
		// As taskerd's other commands: a SQLite DSN that does not open is
		// the caller's to fix.
		return nil, usageErrorf("opening database %s: %s", dsn, err)
	}
	d.Store = s
	return d, nil
}

// checkSQLiteFile refuses an existing file that holds tasks, or tables
// without being a taskerd database. A missing or empty file is fine.
func checkSQLiteFile(ctx context.Context, path string) error {
	info, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || (err == nil && info.Size() == 0) {
		return nil
	}
	if err != nil {
		return usageErrorf("--db sqlite:%s: %s", path, err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return usageErrorf("--db sqlite:%s: %s", path, err)
	}
	defer db.Close()
	var tables, ours int
	err = db.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE name = 'taskerd_schema_migrations') FROM sqlite_master WHERE type = 'table'`).Scan(&tables, &ours)
	if err != nil {
		return usageErrorf("--db sqlite:%s: not a SQLite database taskerd can read: %s", path, err)
	}
	switch {
	case tables == 0:
		return nil
	case ours == 0:
		return usageErrorf("--db sqlite:%s holds %d tables and is not a taskerd database: taskerd bench would write into it; name another file, or add --force", path, tables)
	}
	var n int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM tasks LIMIT 1001)`).Scan(&n); err != nil {
		return usageErrorf("--db sqlite:%s: reading its tasks: %s", path, err)
	}
	if n > 0 {
		return usageErrorf("--db sqlite:%s already holds %s: taskerd bench runs on a database of its own; name another file, or add --force", path, countTasks(n))
	}
	return nil
}

func countTasks(n int64) string {
	switch {
	case n > 1000:
		return "more than 1000 tasks"
	case n == 1:
		return "1 task"
	}
	return fmt.Sprintf("%d tasks", n)
}

func openPostgres(ctx context.Context, dsn string, force bool) (*Database, error) {
	if err := postgres.CheckDSN(dsn); err != nil {
		return nil, usageErrorf("--db: %s", err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, usageErrorf("--db %s: cannot be parsed", postgres.Redact(dsn))
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, usageErrorf("--db %s: cannot be parsed", postgres.Redact(dsn))
	}
	connect := func() (*pgx.Conn, error) {
		c, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", postgres.Redact(dsn), err)
		}
		return c, nil
	}
	conn, err := connect()
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if !force {
		if err := checkPostgres(ctx, conn, dsn); err != nil {
			return nil, err
		}
	}

	d := &Database{Kind: "postgres"}
	q := u.Query()
	named := q.Get("search_path") != ""
	var schema string
	if named {
		// The first schema of the search path that exists, or the first
		// one named, created (and kept).
		var cur *string
		if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&cur); err != nil {
			return nil, fmt.Errorf("%s: %w", postgres.Redact(dsn), err)
		}
		if cur != nil {
			schema = *cur
		} else {
			schema = firstSchema(q.Get("search_path"))
			if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
				return nil, fmt.Errorf("%s: creating schema %s: %w", postgres.Redact(dsn), schema, err)
			}
		}
		d.Where = "PostgreSQL schema " + schema + " (kept)"
	} else {
		var rnd [4]byte
		_, _ = rand.Read(rnd[:])
		schema = fmt.Sprintf("taskerd_bench_%d_%s", os.Getpid(), hex.EncodeToString(rnd[:]))
		if _, err := conn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
			return nil, fmt.Errorf("%s: creating schema %s: %w", postgres.Redact(dsn), schema, err)
		}
		d.cleanup = func() error {
			// A fresh connection: ctx may be over (Ctrl-C), the schema
			// must go anyway.
			c, err := pgx.ConnectConfig(context.Background(), cfg.ConnConfig.Copy())
			if err != nil {
				return fmt.Errorf("dropping schema %s: %w", schema, err)
			}
			defer c.Close(context.Background())
			if _, err := c.Exec(context.Background(), `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
				return fmt.Errorf("dropping schema %s: %w", schema, err)
			}
			return nil
		}
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		dsn = u.String()
		d.Where = "PostgreSQL schema " + schema + " (dropped afterwards)"
	}
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		if d.cleanup != nil {
			err = errors.Join(err, d.cleanup())
		}
		return nil, err
	}
	d.Store = s
	d.openAnother = func(ctx context.Context) (backends.Store, error) {
		return postgres.Open(ctx, dsn, postgres.WithoutMigrate())
	}
	return d, nil
}

// checkPostgres refuses a database whose search path finds a tasks table
// with rows in it.
func checkPostgres(ctx context.Context, conn *pgx.Conn, dsn string) error {
	var schema *string
	err := conn.QueryRow(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass('tasks')`).Scan(&schema)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && schema == nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: looking for tasks: %w", postgres.Redact(dsn), err)
	}
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM `+pgx.Identifier{*schema, "tasks"}.Sanitize()+` LIMIT 1001) t`).Scan(&n); err != nil {
		return fmt.Errorf("%s: counting tasks: %w", postgres.Redact(dsn), err)
	}
	if n > 0 {
		return usageErrorf("--db %s already holds %s (schema %s): taskerd bench runs on a database of its own; name another database, or add --force", postgres.Redact(dsn), countTasks(n), *schema)
	}
	return nil
}

// firstSchema is the first schema a search_path value names: unquoted and
// lower-cased as PostgreSQL reads an identifier.
func firstSchema(path string) string {
	first, _, _ := strings.Cut(path, ",")
	first = strings.TrimSpace(first)
	if len(first) >= 2 && first[0] == '"' && first[len(first)-1] == '"' {
		return strings.ReplaceAll(first[1:len(first)-1], `""`, `"`)
	}
	return strings.ToLower(first)
}
