-- 0001: tasks, steps, edges and the transition audit trail.
--
-- Times are timestamptz (microsecond precision, UTC on the wire); durations
-- bigint microseconds, as in the SQLite backend. JSON is kept as text, byte
-- for byte what the engine wrote (jsonb would reorder and respace it).
-- The current state of a task or step is denormalized on its row and written
-- in the same statement as its transition row (SEMANTICS §1).

CREATE TABLE tasks (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace         text        NOT NULL,
    workflow_name     text        NOT NULL,
    workflow_version  text        NOT NULL,
    context           text        NOT NULL,              -- JSON object
    initiator         text        NOT NULL DEFAULT '',
    source_system     text        NOT NULL DEFAULT '',
    reason            text        NOT NULL DEFAULT '',
    tags              text[]      NOT NULL DEFAULT '{}',
    requested_at      timestamptz NOT NULL,
    idempotency_key   text,                              -- NULL when the request had none
    request_hash      text        NOT NULL DEFAULT '',
    state             text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
    -- How many transitions the task has: the sort_key of its most recent
    -- one. Bumped by the UPDATE that changes the state, so no earlier
    -- transition row is ever rewritten to clear a most_recent flag.
    transition_count  integer     NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

CREATE UNIQUE INDEX tasks_idempotency_key ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Claims and NextWakeup keep to tasks that may still run: finished tasks,
-- however many, are not in this index.
CREATE INDEX tasks_unfinished ON tasks (id) WHERE state IN ('pending', 'in_progress');

CREATE TABLE steps (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id                 bigint      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name                    text        NOT NULL,
    position                integer     NOT NULL,
    handler                 text        NOT NULL,
    config                  text,                        -- JSON, NULL when the step has none
    retryable               boolean     NOT NULL,
    retry_limit             integer     NOT NULL,
    backoff_base_us         bigint      NOT NULL,
    backoff_max_us          bigint      NOT NULL,
    timeout_us              bigint      NOT NULL,
    skippable               boolean     NOT NULL,
    state                   text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
    attempts                integer     NOT NULL DEFAULT 0,
    started_at              timestamptz,
    last_attempted_at       timestamptz,
    last_failure_at         timestamptz,                 -- when the step last entered error
    backoff_request_seconds integer,
    results                 text,
    error                   text,
    processed               boolean     NOT NULL DEFAULT false,
    processed_at            timestamptz,
    lease_owner             text,
    lease_expires_at        timestamptz,
    lease_token             bigint      NOT NULL DEFAULT 0,
    cancel_requested        boolean     NOT NULL DEFAULT false,
    -- The number of parents not yet complete or resolved_manually. Both
    -- states are terminal, so it only goes down: set at creation, decremented
    -- for every child when a step enters one of them. A pre-filter for the
    -- claim (see steps_claimable), never the definition of
    -- dependencies_satisfied, which stays the rule in taskerd_step_readiness.
    unsatisfied_parents     integer     NOT NULL DEFAULT 0 CHECK (unsatisfied_parents >= 0),
    transition_count        integer     NOT NULL DEFAULT 0, -- as on tasks
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    UNIQUE (task_id, position),
    UNIQUE (task_id, name)
);

-- Claims scan only steps that may still run and whose parents are all done:
-- finished history (complete, cancelled, resolved_manually), however large,
-- and the not-yet-runnable rest of the tasks in flight are not in this
-- index, so claim cost grows with neither (DESIGN "Data and concurrency").
-- Its order is the claim order.
CREATE INDEX steps_claimable ON steps (task_id, position)
    WHERE state IN ('pending', 'error') AND unsatisfied_parents = 0;

-- Lease recovery and NextWakeup look only at running steps.
CREATE INDEX steps_running ON steps (lease_expires_at) WHERE state = 'in_progress';

CREATE TABLE edges (
    parent_step_id bigint NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    child_step_id  bigint NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    PRIMARY KEY (child_step_id, parent_step_id)
);

-- Descendants (CancelStep) and the children's counters walk parent -> child.
CREATE INDEX edges_parent ON edges (parent_step_id, child_step_id);

CREATE TABLE transitions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     bigint      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    step_id     bigint      REFERENCES steps (id) ON DELETE CASCADE, -- NULL for the task's own
    from_state  text,                                                -- NULL for a task's first
    to_state    text        NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    metadata    text,                                                -- JSON
    -- Counts the object's transitions from 1. The most recent is the one
    -- whose sort_key equals the object's transition_count.
    sort_key    integer     NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE INDEX transitions_task ON transitions (task_id, id);
CREATE UNIQUE INDEX transitions_step_sort_key ON transitions (step_id, sort_key) WHERE step_id IS NOT NULL;
CREATE UNIQUE INDEX transitions_task_sort_key ON transitions (task_id, sort_key) WHERE step_id IS NULL;
