-- 0006: a step's task is checked by its primary key, never through the
-- partial index tasks_unfinished.
--
-- taskerd_next_wakeup (0004) joined tasks on "state IN ('pending',
-- 'in_progress')". Where statistics say few tasks are unfinished (true of
-- any database that has run for a while) the planner answered that join
-- with a bitmap scan of all of tasks_unfinished and a join filter. But every
-- task passes through that index, and its entries stay until VACUUM
-- removes them; a bitmap scan visits every one of those dead entries' heap
-- tuples and, unlike a plain index scan, never marks them dead. Between two
-- vacuums the cost grew with the tasks finished since the last one: 4-6 ms
-- and 450 buffers a call after 20,000 one-step tasks, for an answer that
-- needs a handful. Now each candidate's task is read by its id, in a scalar
-- subquery, and the function plans with sequential scans and hash or merge
-- joins off: its generic plan is made on the session's first call and kept
-- (until the next ANALYZE), and one made while the tables are small would
-- otherwise read all of tasks for each candidate once they have grown. The
-- claim (claims.go) checks the task the same way, under the same settings.
CREATE OR REPLACE FUNCTION taskerd_next_wakeup(p_now timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    -- least() ignores a NULL: no instant of one kind leaves the other.
    RETURN least(
        (SELECT min(r.next_retry_at)
           FROM taskerd_step_readiness_rows(p_now) r
          WHERE r.current_state IN ('pending', 'error') AND r.unsatisfied_parents = 0
            AND (SELECT t.state FROM tasks t WHERE t.id = r.task_id) IN ('pending', 'in_progress')
            AND r.dependencies_satisfied AND r.retry_eligible AND r.next_retry_at > p_now),
        -- The earliest lease first, from steps_running in its order: the
        -- scan stops at the first whose task is unfinished.
        (SELECT s.lease_expires_at
           FROM steps s
          WHERE s.state = 'in_progress' AND s.lease_expires_at > p_now
            AND (SELECT t.state FROM tasks t WHERE t.id = s.task_id) IN ('pending', 'in_progress')
          ORDER BY s.lease_expires_at
          LIMIT 1)
    );
END
$$;
