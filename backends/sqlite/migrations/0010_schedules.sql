-- 0009: the cluster-wide state of the schedules of workflow files
-- (docs/schedules.md). The schedules themselves are in the files; a row is
-- made when a node first sees one, so that a new schedule catches up from
-- then, not from the epoch. Times are unix microseconds UTC.
CREATE TABLE schedules (
    name            TEXT    PRIMARY KEY,
    first_seen_at   INTEGER NOT NULL,
    paused          INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    paused_by       TEXT    NOT NULL DEFAULT '',
    paused_at       INTEGER,
    resumed_at      INTEGER,
    -- The latest scheduled instant fired, skipped or dropped.
    handled_through INTEGER,
    updated_at      INTEGER NOT NULL
) STRICT;

-- One row per firing: the primary key is what makes a firing happen once
-- whatever the number of nodes, and the row is written in the transaction
-- that creates its task. task_id names no foreign key: retention may delete
-- the task and the firing stays as the record that it happened.
CREATE TABLE schedule_firings (
    schedule   TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('scheduled', 'manual')),
    fire_at    INTEGER NOT NULL,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('created', 'skipped')),
    task_id    INTEGER,
    actor      TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (schedule, kind, fire_at)
) STRICT;

CREATE INDEX schedule_firings_recent ON schedule_firings (schedule, fire_at);
CREATE INDEX schedule_firings_task ON schedule_firings (task_id) WHERE task_id IS NOT NULL;
