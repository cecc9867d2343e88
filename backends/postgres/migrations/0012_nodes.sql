-- 0012: the node registry, the leader lease and retention's index.
--
-- Every `taskerd serve` node sharing the database registers here and
-- heartbeats last_seen; the leader reads them to find the nodes that died
-- and recover their leases at once.
CREATE TABLE nodes (
    id         text        PRIMARY KEY,   -- the engine's NodeID: its leases' owner
    address    text        NOT NULL,
    version    text        NOT NULL,
    workers    integer     NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    stopped_at timestamptz                -- NULL while it runs (or died)
);

-- The leader lease: one row, taken or renewed by one INSERT .. ON CONFLICT
-- statement (TryLeadership). A row rather than pg_try_advisory_lock: it
-- works the same on SQLite, moves when its holder stops renewing it rather
-- than when a connection drops, and its epoch names each term.
CREATE TABLE leader_lease (
    name       text        PRIMARY KEY CHECK (name = 'leader'),
    holder     text        NOT NULL,
    epoch      bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Retention (DeleteFinishedTasks) finds old finished tasks without reading
-- the unfinished ones.
CREATE INDEX tasks_finished ON tasks (updated_at, id)
    WHERE state IN ('complete', 'cancelled', 'resolved_manually');

