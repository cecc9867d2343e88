-- 0012: the cluster-wide state of the schedules of workflow files
-- (docs/schedules.md). The schedules themselves are in the files; a row is
-- made when a node first sees one, so that a new schedule catches up from
-- then, not from the epoch.
CREATE TABLE schedules (
    name            text        PRIMARY KEY,
    first_seen_at   timestamptz NOT NULL,
    paused          boolean     NOT NULL DEFAULT false,
    paused_by       text        NOT NULL DEFAULT '',
    paused_at       timestamptz,
    resumed_at      timestamptz,
    -- The latest scheduled instant fired, skipped or dropped.
    handled_through timestamptz,
    updated_at      timestamptz NOT NULL
);

-- One row per firing: the primary key is what makes a firing happen once
-- whatever the number of nodes, and the row is written in the transaction
-- that creates its task. task_id names no foreign key: retention may delete
-- the task and the firing stays as the record that it happened.
CREATE TABLE schedule_firings (
    schedule   text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('scheduled', 'manual')),
    fire_at    timestamptz NOT NULL,
    outcome    text        NOT NULL CHECK (outcome IN ('created', 'skipped')),
    task_id    bigint,
    actor      text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    PRIMARY KEY (schedule, kind, fire_at)
);

CREATE INDEX schedule_firings_recent ON schedule_firings (schedule, fire_at);
CREATE INDEX schedule_firings_task ON schedule_firings (task_id) WHERE task_id IS NOT NULL;
