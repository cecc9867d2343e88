-- 0007: the event log (an outbox, issue 16). Every write stores the events
-- of its changes in its own transaction; seq numbers them in commit order.
-- AUTOINCREMENT, not a plain rowid: a number is never handed out twice, even
-- after the newest events were deleted with their task, and since the
-- writer is alone and a rolled-back insert rolls back sqlite_sequence too,
-- the numbers have no gaps.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    type       TEXT    NOT NULL,
    -- Retention is the task's: its events go with it.
    task_id    INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    -- The step's id on step events, NULL on task events; no foreign key
    -- (a step goes only with its task, and a key would make every step
    -- deletion look its events up).
    step_id    INTEGER,
    namespace  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,                -- the write's instant
    body       TEXT    NOT NULL                 -- the event's JSON, without seq
) STRICT;

-- A task's events (GET /v1/tasks/{id}/events, and the cascade).
CREATE INDEX events_task ON events (task_id, seq);
-- A reader that sees only some namespaces.
CREATE INDEX events_namespace ON events (namespace, seq);

-- The durable readers of the log (webhooks, the bus): where each is, and
-- which node delivers for it until when.
CREATE TABLE event_cursors (
    name        TEXT    PRIMARY KEY,
    seq         INTEGER NOT NULL,              -- the last event it handled
    owner       TEXT    NOT NULL DEFAULT '',   -- the lease holder, '' for none
    lease_until INTEGER,                       -- NULL for no lease
    updated_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Events a cursor gave up delivering.
CREATE TABLE event_dead_letters (
    cursor     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (cursor, seq)
) STRICT, WITHOUT ROWID;
