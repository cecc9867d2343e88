-- 0001: tasks, steps, edges and the transition audit trail.
--
-- Times are INTEGER unix microseconds UTC; durations INTEGER microseconds.
-- The current state of a task or step is denormalized on its row and written
-- in the same transaction as its transition row (SEMANTICS §1).

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY,
    namespace        TEXT    NOT NULL,
    workflow_name    TEXT    NOT NULL,
    workflow_version TEXT    NOT NULL,
    context          TEXT    NOT NULL,                -- JSON object
    initiator        TEXT    NOT NULL DEFAULT '',
    source_system    TEXT    NOT NULL DEFAULT '',
    reason           TEXT    NOT NULL DEFAULT '',
    tags             TEXT    NOT NULL DEFAULT '[]',   -- JSON array of strings
    requested_at     INTEGER NOT NULL,
    idempotency_key  TEXT,                            -- NULL when the request had none
    request_hash     TEXT    NOT NULL DEFAULT '',
    state            TEXT    NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX tasks_idempotency_key ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE steps (
    id                      INTEGER PRIMARY KEY,
    task_id                 INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name                    TEXT    NOT NULL,
    position                INTEGER NOT NULL,
    handler                 TEXT    NOT NULL,
    config                  TEXT,                     -- JSON, NULL when the step has none
    retryable               INTEGER NOT NULL,
    retry_limit             INTEGER NOT NULL,
    backoff_base_us         INTEGER NOT NULL,
    backoff_max_us          INTEGER NOT NULL,
    timeout_us              INTEGER NOT NULL,
    skippable               INTEGER NOT NULL,
    state                   TEXT    NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
    attempts                INTEGER NOT NULL DEFAULT 0,
    started_at              INTEGER,
    last_attempted_at       INTEGER,
    last_failure_at         INTEGER,                  -- when the step last entered error
    backoff_request_seconds INTEGER,
    results                 TEXT,
    error                   TEXT,
    processed               INTEGER NOT NULL DEFAULT 0,
    processed_at            INTEGER,
    lease_owner             TEXT,
    lease_expires_at        INTEGER,
    lease_token             INTEGER NOT NULL DEFAULT 0,
    cancel_requested        INTEGER NOT NULL DEFAULT 0,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    UNIQUE (task_id, position),
    UNIQUE (task_id, name)
) STRICT;

-- Claims scan only steps that may still run: finished history (complete,
-- cancelled, resolved_manually), however large, is not in this index, so
-- claim cost does not grow with it (DESIGN "Data and concurrency"). Its
-- order is the claim order within a task.
CREATE INDEX steps_claimable ON steps (task_id, position) WHERE state IN ('pending', 'error');

-- Lease recovery and NextWakeup look only at running steps.
CREATE INDEX steps_running ON steps (lease_expires_at) WHERE state = 'in_progress';

CREATE TABLE edges (
    parent_step_id INTEGER NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    child_step_id  INTEGER NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    PRIMARY KEY (child_step_id, parent_step_id)
) STRICT, WITHOUT ROWID;

-- Descendants (CancelStep) walk edges from parent to child.
CREATE INDEX edges_parent ON edges (parent_step_id, child_step_id);

CREATE TABLE transitions (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    step_id     INTEGER REFERENCES steps (id) ON DELETE CASCADE, -- NULL for the task's own
    from_state  TEXT,                                             -- NULL for a task's first
    to_state    TEXT    NOT NULL,
    reason      TEXT    NOT NULL DEFAULT '',
    metadata    TEXT,
    sort_key    INTEGER NOT NULL,
    most_recent INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX transitions_task ON transitions (task_id, id);
CREATE UNIQUE INDEX transitions_step_sort_key ON transitions (step_id, sort_key) WHERE step_id IS NOT NULL;
CREATE UNIQUE INDEX transitions_task_sort_key ON transitions (task_id, sort_key) WHERE step_id IS NULL;
-- At most one most-recent transition per object.
CREATE UNIQUE INDEX transitions_step_most_recent ON transitions (step_id) WHERE step_id IS NOT NULL AND most_recent = 1;
CREATE UNIQUE INDEX transitions_task_most_recent ON transitions (task_id) WHERE step_id IS NULL AND most_recent = 1;
