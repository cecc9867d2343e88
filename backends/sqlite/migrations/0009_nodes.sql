-- 0009: the node registry, the leader lease and retention's index (see
-- PostgreSQL's 0012_nodes.sql). One SQLite node is its own leader through
-- the same row.
CREATE TABLE IF NOT EXISTS nodes (
    id         TEXT    PRIMARY KEY,   -- the engine's NodeID: its leases' owner
    address    TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    workers    INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    stopped_at INTEGER                -- NULL while it runs (or died)
) STRICT;

CREATE TABLE IF NOT EXISTS leader_lease (
    name       TEXT    PRIMARY KEY CHECK (name = 'leader'),
    holder     TEXT    NOT NULL,
    epoch      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (updated_at, id)
    WHERE state IN ('complete', 'cancelled', 'resolved_manually');
