// Package sqlite is the embedded SQLite backend (modernc.org/sqlite, no
// cgo), the default for single-node and edge deployments.
//
// Open("sqlite:PATH") or Open("sqlite::memory:"), optionally with
// "?synchronous=normal"; the default is synchronous=FULL, because an edge
// device may lose power and WAL with NORMAL may then lose the last commits.
// A file database runs in WAL mode with foreign keys on and a busy timeout,
// one writer connection (BEGIN IMMEDIATE) and a pool of read-only readers.
// Write operations that wait for the writer at the same moment share one
// transaction, each in its own savepoint (group commit, Store.write): each
// is still atomic and is acknowledged only once committed.
//
// The schema is the embedded migrations/*.sql, applied by Open and recorded
// in taskerd_schema_migrations; a database written by a newer taskerd is
// refused. Times are INTEGER unix microseconds UTC.
//
// Step readiness (SEMANTICS §3) and the task execution context (§4) are SQL:
// sql/readiness.sql and sql/context.sql are CTE fragments that every query
// needing them is composed from (queries.go), the claim included, so the
// rule "is this step ready?" is written once in this backend. The
// differential test in backends/backendtest checks them against the Go
// reference in engine.
package sqlite

import _ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
