-- 0002: step readiness (SEMANTICS §3) and the task execution context (§4)
-- as SQL functions, Tasker's design. The Go code calls them and never
-- recomputes their rules; the backendtest differential test compares them
-- with engine.ReferenceReadiness and engine.ReferenceExecutionContext.
--
-- Every function is LANGUAGE sql, STABLE, a single SELECT: PostgreSQL
-- inlines such functions into the query that calls them, so a caller's
-- filter (one task, a list of tasks, the claim's candidates) reaches the
-- indexes of steps instead of the function computing every step first.
-- p_now defaults to now(); the Go code always passes its own clock.

-- The readiness of every step, unfiltered: the one place in this backend
-- that says whether a step is ready for execution. Callers filter it.
-- Also returns position and unsatisfied_parents so that callers can order
-- and pre-filter through the indexes of steps.
CREATE FUNCTION taskerd_step_readiness_rows(p_now timestamptz DEFAULT now())
RETURNS TABLE (
    step_id                 bigint,
    task_id                 bigint,
    name                    text,
    "position"              integer,
    current_state           text,
    dependencies_satisfied  boolean,
    retry_eligible          boolean,
    ready_for_execution     boolean,
    last_failure_at         timestamptz,
    next_retry_at           timestamptz,
    total_parents           integer,
    completed_parents       integer,
    attempts                integer,
    retry_limit             integer,
    backoff_request_seconds integer,
    last_attempted_at       timestamptz,
    unsatisfied_parents     integer
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT
    r.id, r.task_id, r.name, r.position, r.state,
    r.dependencies_satisfied,
    r.retry_eligible,
    -- Rule 1, rule 5 (a live lease expires after now), rules 6 and 7
    -- together, and rules 3-4; the dependency subquery last, and only when
    -- the cheap rules hold (CASE evaluates lazily).
    CASE WHEN r.state IN ('pending', 'error')
              AND r.retry_eligible
              AND (r.lease_expires_at IS NULL OR r.lease_expires_at <= p_now)
              AND (r.next_retry_at IS NULL OR r.next_retry_at <= p_now)
         THEN r.dependencies_satisfied
         ELSE false
    END,
    r.last_failure_at,
    r.next_retry_at,
    r.total_parents,
    r.completed_parents,
    r.attempts, r.retry_limit, r.backoff_request_seconds, r.last_attempted_at,
    r.unsatisfied_parents
FROM (
    SELECT
        b.*,
        -- Rules 3 and 4.
        (b.attempts < b.retry_limit AND (b.retryable OR b.attempts = 0)) AS retry_eligible,
        -- The later of the backoff expiries that apply (greatest ignores NULLs).
        greatest(b.requested_backoff_until, b.failure_backoff_until) AS next_retry_at
    FROM (
        SELECT
            s.id, s.task_id, s.name, s.position, s.state, s.attempts, s.retry_limit, s.retryable,
            s.backoff_request_seconds, s.last_attempted_at, s.last_failure_at, s.lease_expires_at,
            s.unsatisfied_parents,
            (SELECT count(*) FROM edges e WHERE e.child_step_id = s.id)::integer AS total_parents,
            (SELECT count(*)
               FROM edges e JOIN steps p ON p.id = e.parent_step_id
              WHERE e.child_step_id = s.id
                AND p.state IN ('complete', 'resolved_manually'))::integer AS completed_parents,
            -- Rule 2: every parent complete or resolved_manually (true with
            -- no parents), asked directly so that callers that read neither
            -- count above never compute them.
            NOT EXISTS (SELECT 1
                          FROM edges e JOIN steps p ON p.id = e.parent_step_id
                         WHERE e.child_step_id = s.id
                           AND p.state NOT IN ('complete', 'resolved_manually')) AS dependencies_satisfied,
            -- Rule 6: the handler-requested backoff.
            CASE WHEN s.backoff_request_seconds IS NOT NULL AND s.last_attempted_at IS NOT NULL
                 THEN s.last_attempted_at + s.backoff_request_seconds * interval '1 second'
            END AS requested_backoff_until,
            -- Rule 7: the failure backoff, backoff(n) = min(base * 2^n, max),
            -- exactly engine.Backoff: base << n <= max iff base <= max >> n,
            -- and past 40 doublings any base >= 1ms exceeds any max <= 24h.
            CASE WHEN s.state = 'error' AND s.last_failure_at IS NOT NULL
                 THEN s.last_failure_at + interval '1 microsecond' *
                      CASE WHEN s.attempts >= 40 THEN s.backoff_max_us
                           WHEN s.backoff_base_us > (s.backoff_max_us >> s.attempts) THEN s.backoff_max_us
                           ELSE s.backoff_base_us << s.attempts
                      END
            END AS failure_backoff_until
        FROM steps s
    ) b
) r
$$;

-- SEMANTICS §3 for every step of one task, ordered by position.
CREATE FUNCTION taskerd_step_readiness(p_task_id bigint, p_now timestamptz DEFAULT now())
RETURNS TABLE (
    step_id                 bigint,
    task_id                 bigint,
    name                    text,
    "position"              integer,
    current_state           text,
    dependencies_satisfied  boolean,
    retry_eligible          boolean,
    ready_for_execution     boolean,
    last_failure_at         timestamptz,
    next_retry_at           timestamptz,
    total_parents           integer,
    completed_parents       integer,
    attempts                integer,
    retry_limit             integer,
    backoff_request_seconds integer,
    last_attempted_at       timestamptz
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT r.step_id, r.task_id, r.name, r.position, r.current_state, r.dependencies_satisfied,
       r.retry_eligible, r.ready_for_execution, r.last_failure_at, r.next_retry_at,
       r.total_parents, r.completed_parents, r.attempts, r.retry_limit,
       r.backoff_request_seconds, r.last_attempted_at
  FROM taskerd_step_readiness_rows(p_now) r
 WHERE r.task_id = p_task_id
 ORDER BY r.position
$$;

-- The same for many tasks, ordered by task id then position; unknown ids
-- yield no rows.
CREATE FUNCTION taskerd_step_readiness_batch(p_task_ids bigint[], p_now timestamptz DEFAULT now())
RETURNS TABLE (
    step_id                 bigint,
    task_id                 bigint,
    name                    text,
    "position"              integer,
    current_state           text,
    dependencies_satisfied  boolean,
    retry_eligible          boolean,
    ready_for_execution     boolean,
    last_failure_at         timestamptz,
    next_retry_at           timestamptz,
    total_parents           integer,
    completed_parents       integer,
    attempts                integer,
    retry_limit             integer,
    backoff_request_seconds integer,
    last_attempted_at       timestamptz
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT r.step_id, r.task_id, r.name, r.position, r.current_state, r.dependencies_satisfied,
       r.retry_eligible, r.ready_for_execution, r.last_failure_at, r.next_retry_at,
       r.total_parents, r.completed_parents, r.attempts, r.retry_limit,
       r.backoff_request_seconds, r.last_attempted_at
  FROM taskerd_step_readiness_rows(p_now) r
 WHERE r.task_id = ANY (p_task_ids)
 ORDER BY r.task_id, r.position
$$;

-- SEMANTICS §4 for many tasks: one row per known task, ordered by task id;
-- an unknown id yields no row, a task without steps zero counts.
CREATE FUNCTION taskerd_task_execution_contexts(p_task_ids bigint[], p_now timestamptz DEFAULT now())
RETURNS TABLE (
    task_id               bigint,
    total_steps           integer,
    pending_steps         integer,
    in_progress_steps     integer,
    completed_steps       integer,
    failed_steps          integer,
    ready_steps           integer,
    blocked_steps         integer,
    execution_status      text,
    recommended_action    text,
    health_status         text,
    completion_percentage double precision
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT
    c.task_id, c.total_steps, c.pending_steps, c.in_progress_steps, c.completed_steps,
    c.failed_steps, c.ready_steps, c.blocked_steps,
    CASE WHEN c.ready_steps > 0 THEN 'has_ready_steps'
         WHEN c.in_progress_steps > 0 THEN 'processing'
         WHEN c.blocked_steps > 0 THEN 'blocked_by_failures'
         WHEN c.completed_steps = c.total_steps AND c.total_steps > 0 THEN 'all_complete'
         ELSE 'waiting_for_dependencies'
    END,
    CASE WHEN c.ready_steps > 0 THEN 'execute_ready_steps'
         WHEN c.in_progress_steps > 0 THEN 'wait_for_completion'
         WHEN c.blocked_steps > 0 THEN 'handle_failures'
         WHEN c.completed_steps = c.total_steps AND c.total_steps > 0 THEN 'finalize_task'
         ELSE 'wait_for_dependencies'
    END,
    CASE WHEN c.failed_steps = 0 THEN 'healthy'
         WHEN c.ready_steps > 0 THEN 'recovering'
         WHEN c.blocked_steps > 0 THEN 'blocked'
         WHEN c.blocked_steps = 0 THEN 'recovering'
         ELSE 'unknown'
    END,
    -- Rounded exactly as the Go reference: math.Round(c*10000/t) / 100
    -- (numeric round() also rounds halves away from zero).
    CASE WHEN c.total_steps > 0
         THEN (round(c.completed_steps * 10000.0 / c.total_steps) / 100.0)::double precision
         ELSE 0.0
    END
FROM (
    SELECT
        t.id AS task_id,
        count(r.step_id)::integer AS total_steps,
        count(*) FILTER (WHERE r.current_state = 'pending')::integer AS pending_steps,
        count(*) FILTER (WHERE r.current_state = 'in_progress')::integer AS in_progress_steps,
        count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually'))::integer AS completed_steps,
        count(*) FILTER (WHERE r.current_state = 'error')::integer AS failed_steps,
        count(*) FILTER (WHERE r.ready_for_execution)::integer AS ready_steps,
        -- Permanently blocked: in error and not retry-eligible. A step
        -- waiting out a backoff with attempts left is never counted here.
        count(*) FILTER (WHERE r.current_state = 'error' AND NOT r.retry_eligible)::integer AS blocked_steps
    FROM tasks t
    LEFT JOIN taskerd_step_readiness_rows(p_now) r ON r.task_id = t.id
    WHERE t.id = ANY (p_task_ids)
    GROUP BY t.id
) c
ORDER BY c.task_id
$$;

-- SEMANTICS §4 for one task: no row for an unknown task.
CREATE FUNCTION taskerd_task_execution_context(p_task_id bigint, p_now timestamptz DEFAULT now())
RETURNS TABLE (
    task_id               bigint,
    total_steps           integer,
    pending_steps         integer,
    in_progress_steps     integer,
    completed_steps       integer,
    failed_steps          integer,
    ready_steps           integer,
    blocked_steps         integer,
    execution_status      text,
    recommended_action    text,
    health_status         text,
    completion_percentage double precision
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT * FROM taskerd_task_execution_contexts(ARRAY[p_task_id], p_now)
$$;
