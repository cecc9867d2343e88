// Package sqlite will be the embedded SQLite backend (modernc.org/sqlite, no
// cgo), the default for single-node and edge deployments.
//
// Nothing is implemented yet: issue 3 builds it.
package sqlite
