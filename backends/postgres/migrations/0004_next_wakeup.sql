-- 0004: the next wake-up instant as a function whose query is planned once
-- per session.
--
-- The query inlines taskerd_step_readiness_rows twice over, and planning it
-- takes 15-18 ms on a 2-core machine, against 0.1-0.3 ms to run it. As a
-- plain prepared statement PostgreSQL kept planning it afresh on every
-- call: with p_now known, the custom plan always looks cheaper than the
-- generic one, and the planning time is not part of that comparison. An
-- engine that is waiting for work asks this many times a second, so that
-- planning was a large share of the server's CPU. In PL/pgSQL the query's
-- plan is cached for the session, and force_generic_plan makes it the
-- generic plan, which does not depend on p_now: the candidates come from
-- the partial index steps_claimable either way.
--
-- It answers: the earliest future next_retry_at of a step that only waits
-- on a backoff, or lease expiry of a running step, among pending or
-- in_progress tasks. The readiness candidates repeat the predicate of
-- steps_claimable (the function is inlined, so the planner sees it on
-- steps): a step with an unsatisfied parent has dependencies_satisfied
-- false and is skipped anyway.
CREATE FUNCTION taskerd_next_wakeup(p_now timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- least() ignores a NULL: no instant of one kind leaves the other.
    RETURN least(
        (SELECT min(r.next_retry_at)
           FROM taskerd_step_readiness_rows(p_now) r JOIN tasks t ON t.id = r.task_id
          WHERE r.current_state IN ('pending', 'error') AND r.unsatisfied_parents = 0
            AND t.state IN ('pending', 'in_progress')
            AND r.dependencies_satisfied AND r.retry_eligible AND r.next_retry_at > p_now),
        -- The earliest lease first, from steps_running in its order: the
        -- scan stops at the first whose task is unfinished.
        (SELECT s.lease_expires_at
           FROM steps s JOIN tasks t ON t.id = s.task_id
          WHERE s.state = 'in_progress' AND s.lease_expires_at > p_now
            AND t.state IN ('pending', 'in_progress')
          ORDER BY s.lease_expires_at
          LIMIT 1)
    );
END
$$;
