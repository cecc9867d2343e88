// Package postgres is the PostgreSQL backend (jackc/pgx/v5, pgxpool), where
// several taskerd nodes share one database and the work.
//
// The schema, its indexes and the SQL functions that compute step readiness
// and the task execution context (SEMANTICS §3–§4) are embedded migrations
// (migrations/*.sql), applied by Migrate and, unless told otherwise, by Open.
// The Go code calls those functions — taskerd_step_readiness,
// taskerd_step_readiness_batch, taskerd_task_execution_context and
// taskerd_task_execution_contexts — and never recomputes their rules; the
// claim and NextWakeup read the same readiness through
// taskerd_step_readiness_rows, which the four are written over.
//
// Concurrency. Every Store method is one READ COMMITTED transaction. Claims
// lock their candidates with FOR UPDATE SKIP LOCKED (in its NO KEY UPDATE
// strength, as every row lock here: the foreign keys of transitions and
// edges take KEY SHARE locks on the task and step rows they reference, and
// a plain FOR UPDATE would conflict with those and deadlock two results of
// one task), so nodes claiming at once never wait on each other nor claim a
// step twice. Result writes are
// fenced by the lease token, read under a row lock. Finalize locks the
// task's row before it computes the execution context, so of two steps of
// one task finishing at once the second sees the first (otherwise each could
// see the other still running, and the task would never complete). Rows are
// locked steps first, then tasks; a deadlock or serialization failure that
// PostgreSQL reports anyway is retried a few times.
//
// Differs from the SQLite backend: no write group commit (PostgreSQL runs
// transactions concurrently), most_recent of a transition is derived from a
// per-object counter rather than stored, and JSON is stored as text.
package postgres
