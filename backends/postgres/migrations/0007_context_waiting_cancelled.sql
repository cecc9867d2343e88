-- 0007: the execution context counts waiting steps and knows a cancelled
-- task (SEMANTICS §4, changed in issue 14).
--
-- A step in error that is still retry-eligible and not ready yet waits out
-- its backoff and will run again: it now keeps the task alive beside a
-- blocked branch (execution_status waiting_for_dependencies, not
-- blocked_by_failures), so finalize no longer sends to error a task with a
-- step that will still run. A cancelled task's context says cancelled
-- (status, health) and recommends nothing. The functions gain a column
-- (waiting_steps), so they are dropped and created again.
DROP FUNCTION taskerd_task_execution_context(bigint, timestamptz);
DROP FUNCTION taskerd_task_execution_contexts(bigint[], timestamptz);

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
    waiting_steps         integer,
    execution_status      text,
    recommended_action    text,
    health_status         text,
    completion_percentage double precision
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT
    c.task_id, c.total_steps, c.pending_steps, c.in_progress_steps, c.completed_steps,
    c.failed_steps, c.ready_steps, c.blocked_steps, c.waiting_steps,
    CASE WHEN c.task_cancelled THEN 'cancelled'
         WHEN c.ready_steps > 0 THEN 'has_ready_steps'
         WHEN c.in_progress_steps > 0 THEN 'processing'
         WHEN c.waiting_steps > 0 THEN 'waiting_for_dependencies'
         WHEN c.blocked_steps > 0 THEN 'blocked_by_failures'
         WHEN c.completed_steps = c.total_steps AND c.total_steps > 0 THEN 'all_complete'
         ELSE 'waiting_for_dependencies'
    END,
    CASE WHEN c.task_cancelled THEN 'none'
         WHEN c.ready_steps > 0 THEN 'execute_ready_steps'
         WHEN c.in_progress_steps > 0 THEN 'wait_for_completion'
         WHEN c.waiting_steps > 0 THEN 'wait_for_dependencies'
         WHEN c.blocked_steps > 0 THEN 'handle_failures'
         WHEN c.completed_steps = c.total_steps AND c.total_steps > 0 THEN 'finalize_task'
         ELSE 'wait_for_dependencies'
    END,
    CASE WHEN c.task_cancelled THEN 'cancelled'
         WHEN c.failed_steps = 0 THEN 'healthy'
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
        t.state = 'cancelled' AS task_cancelled,
        count(r.step_id)::integer AS total_steps,
        count(*) FILTER (WHERE r.current_state = 'pending')::integer AS pending_steps,
        count(*) FILTER (WHERE r.current_state = 'in_progress')::integer AS in_progress_steps,
        count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually'))::integer AS completed_steps,
        count(*) FILTER (WHERE r.current_state = 'error')::integer AS failed_steps,
        count(*) FILTER (WHERE r.ready_for_execution)::integer AS ready_steps,
        -- Permanently blocked: in error and not retry-eligible. A step
        -- waiting out a backoff with attempts left is never counted here.
        count(*) FILTER (WHERE r.current_state = 'error' AND NOT r.retry_eligible)::integer AS blocked_steps,
        count(*) FILTER (WHERE r.current_state = 'error' AND r.retry_eligible
                           AND NOT r.ready_for_execution)::integer AS waiting_steps
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
    waiting_steps         integer,
    execution_status      text,
    recommended_action    text,
    health_status         text,
    completion_percentage double precision
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT * FROM taskerd_task_execution_contexts(ARRAY[p_task_id], p_now)
$$;
