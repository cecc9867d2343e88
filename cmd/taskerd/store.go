package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/sqlite"
)

// defaultDB is where taskerd keeps its state with no --db and no
// TASKERD_DATABASE: an embedded SQLite file in the working directory.
const defaultDB = "sqlite:taskerd.db"

// dbFlagDefault is the --db default: TASKERD_DATABASE when set.
func dbFlagDefault() string {
	if v := os.Getenv("TASKERD_DATABASE"); v != "" {
		return v
	}
	return defaultDB
}

const dbFlagUsage = "database: postgres://USER@HOST:PORT/DB (or postgresql://), sqlite:PATH (add ?synchronous=normal to trade durability for speed) or sqlite::memory:; env TASKERD_DATABASE"

// defaultDBWait is how long a command waits for a PostgreSQL server that
// does not answer at start before it gives up.
const defaultDBWait = 30 * time.Second

// storeFlags are the flags of every command that opens a store.
type storeFlags struct {
	db        string
	dbWait    time.Duration
	noMigrate bool
}

func (f *storeFlags) registerDB(fs interface {
	StringVar(p *string, name, value, usage string)
	DurationVar(p *time.Duration, name string, value time.Duration, usage string)
}) {
	fs.StringVar(&f.db, "db", dbFlagDefault(), dbFlagUsage)
	fs.DurationVar(&f.dbWait, "db-wait", defaultDBWait, "PostgreSQL: how long to retry (with backoff) a server that does not answer at start before exiting 1")
}

// openStore opens the backend a DSN names, migrating its schema unless
// noMigrate. A DSN that names no backend we have is a usage error (exit 2);
// a database that cannot be opened exits 1.
func openStore(ctx context.Context, f storeFlags) (backends.Store, error) {
	dsn := f.db
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		// SQLite is embedded and has one writer: it always migrates.
		s, err := sqlite.Open(ctx, dsn)
		if err != nil {
			return nil, usageErrorf("opening database %s: %s", dsn, err)
		}
		return s, nil
	case postgres.IsDSN(dsn):
		if err := postgres.CheckDSN(dsn); err != nil {
			return nil, usageErrorf("--db: %s", err)
		}
		opts := []postgres.Option{postgres.WithWait(f.dbWait)}
		if f.noMigrate {
			opts = append(opts, postgres.WithoutMigrate())
		}
		s, err := postgres.Open(ctx, dsn, opts...)
		if err != nil {
			return nil, &exitError{code: 1, err: oneLine(err)}
		}
		return s, nil
	default:
		return nil, usageErrorf("--db %q: want postgres://USER@HOST:PORT/DB, sqlite:PATH or sqlite::memory:", redactDSN(dsn))
	}
}

// oneLine keeps an error to one line (a driver message may hold several).
func oneLine(err error) error {
	return fmt.Errorf("%s", strings.Join(strings.Fields(err.Error()), " "))
}

// redactDSN hides a password in a DSN before it is printed.
func redactDSN(dsn string) string { return postgres.Redact(dsn) }
