-- Task execution context, SEMANTICS §4, from step_readiness (readiness.sql).
-- Every query that needs it defines `candidate_steps` and `context_tasks`
-- (rows of `tasks`), then readiness.sql, then this text, then reads
-- `execution_context`: one row per context task, a task without steps with
-- zero counts. Must agree with engine.ReferenceExecutionContext.
step_counts AS (
    SELECT
        task_id,
        count(*) AS total_steps,
        sum(state = 'pending') AS pending_steps,
        sum(state = 'in_progress') AS in_progress_steps,
        sum(state IN ('complete', 'resolved_manually')) AS completed_steps,
        sum(state = 'error') AS failed_steps,
        sum(ready_for_execution) AS ready_steps,
        -- Permanently blocked: in error and not retry-eligible. A step
        -- waiting out a backoff with attempts left is never counted here.
        sum(state = 'error' AND NOT retry_eligible) AS blocked_steps,
        -- Waiting: in error, retry-eligible, not ready yet (its backoff has
        -- not passed). It will run again, so it keeps the task alive.
        sum(state = 'error' AND retry_eligible AND NOT ready_for_execution) AS waiting_steps
    FROM step_readiness
    GROUP BY task_id
),
context_counts AS (
    SELECT
        t.id AS task_id,
        coalesce(c.total_steps, 0) AS total_steps,
        coalesce(c.pending_steps, 0) AS pending_steps,
        coalesce(c.in_progress_steps, 0) AS in_progress_steps,
        coalesce(c.completed_steps, 0) AS completed_steps,
        coalesce(c.failed_steps, 0) AS failed_steps,
        coalesce(c.ready_steps, 0) AS ready_steps,
        coalesce(c.blocked_steps, 0) AS blocked_steps,
        coalesce(c.waiting_steps, 0) AS waiting_steps,
        t.state = 'cancelled' AS task_cancelled
    FROM context_tasks t
    LEFT JOIN step_counts c ON c.task_id = t.id
),
execution_context AS (
    SELECT
        c.*,
        -- A step waiting out a backoff keeps the task alive even beside a
        -- blocked branch: the task is blocked only when nothing can run.
        CASE WHEN c.task_cancelled THEN 'cancelled'
             WHEN c.ready_steps > 0 THEN 'has_ready_steps'
             WHEN c.in_progress_steps > 0 THEN 'processing'
             WHEN c.waiting_steps > 0 THEN 'waiting_for_dependencies'
             WHEN c.blocked_steps > 0 THEN 'blocked_by_failures'
             WHEN c.completed_steps = c.total_steps AND c.total_steps > 0 THEN 'all_complete'
             ELSE 'waiting_for_dependencies'
        END AS execution_status,
        CASE WHEN c.task_cancelled THEN 'none'
             WHEN c.ready_steps > 0 THEN 'execute_ready_steps'
             WHEN c.in_progress_steps > 0 THEN 'wait_for_completion'
             WHEN c.waiting_steps > 0 THEN 'wait_for_dependencies'
             WHEN c.blocked_steps > 0 THEN 'handle_failures'
             WHEN c.completed_steps = c.total_steps AND c.total_steps > 0 THEN 'finalize_task'
             ELSE 'wait_for_dependencies'
        END AS recommended_action,
        CASE WHEN c.task_cancelled THEN 'cancelled'
             WHEN c.failed_steps = 0 THEN 'healthy'
             WHEN c.ready_steps > 0 THEN 'recovering'
             WHEN c.blocked_steps > 0 THEN 'blocked'
             WHEN c.blocked_steps = 0 THEN 'recovering'
             ELSE 'unknown'
        END AS health_status,
        -- Rounded exactly as the Go reference: math.Round(c*10000/t) / 100.
        CASE WHEN c.total_steps > 0
             THEN round(c.completed_steps * 10000.0 / c.total_steps) / 100.0
             ELSE 0.0
        END AS completion_percentage
    FROM context_counts c
)
