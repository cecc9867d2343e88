package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/taskerd/taskerd/backends"
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

// openStore opens the backend a DSN names. A DSN that names no backend we
// have is a usage error (exit 2).
func openStore(ctx context.Context, dsn string) (backends.Store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		s, err := sqlite.Open(ctx, dsn)
		if err != nil {
			return nil, usageErrorf("opening database %s: %s", dsn, err)
		}
		return s, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return nil, usageErrorf("--db %s: the PostgreSQL backend is not built yet; use sqlite:PATH", redactDSN(dsn))
	default:
		return nil, usageErrorf("--db %q: want sqlite:PATH or sqlite::memory:", redactDSN(dsn))
	}
}

// redactDSN hides a password in a DSN before it is printed.
func redactDSN(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return dsn
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return dsn
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return dsn
	}
	return fmt.Sprintf("%s://%s:xxxxx@%s", scheme, user, rest[at+1:])
}
