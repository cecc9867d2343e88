// Package postgres will be the PostgreSQL backend (jackc/pgx/v5), where
// several taskerd nodes share one database and the work.
//
// Nothing is implemented yet: issue 4 builds it.
package postgres
