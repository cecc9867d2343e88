-- Step readiness, SEMANTICS §3: the one place in the SQLite backend that
-- says whether a step is ready for execution. It is a list of CTEs, not a
-- statement: every query that needs readiness (StepReadiness, the batch
-- form, the execution context, ClaimSteps, NextWakeup) defines
-- `candidate_steps` (rows of `steps`) first and puts this text after it, then
-- reads `step_readiness`. Parameter: @now, unix microseconds.
--
-- Must agree field by field with engine.ReferenceReadiness; the differential
-- test in backendtest checks it.
readiness_base AS (
    SELECT
        s.id AS step_id,
        s.task_id,
        s.name,
        s.position,
        s.state,
        s.attempts,
        s.retry_limit,
        s.retryable,
        s.backoff_request_seconds,
        s.last_attempted_at,
        s.last_failure_at,
        s.lease_expires_at,
        (SELECT count(*) FROM edges e WHERE e.child_step_id = s.id) AS total_parents,
        (SELECT count(*)
           FROM edges e JOIN steps p ON p.id = e.parent_step_id
          WHERE e.child_step_id = s.id
            AND p.state IN ('complete', 'resolved_manually')) AS completed_parents,
        -- Rule 2: completed_parents = total_parents (true with no parents),
        -- asked directly. SQLite inlines these CTEs into each query and
        -- evaluates a subquery once per reference, so the rule does not
        -- refer to the two counts above: queries that do not read them (the
        -- claim, the context) never compute them.
        NOT EXISTS (SELECT 1
                      FROM edges e JOIN steps p ON p.id = e.parent_step_id
                     WHERE e.child_step_id = s.id
                       AND p.state NOT IN ('complete', 'resolved_manually')) AS dependencies_satisfied,
        -- Rule 6: the handler-requested backoff.
        CASE WHEN s.backoff_request_seconds IS NOT NULL AND s.last_attempted_at IS NOT NULL
             THEN s.last_attempted_at + s.backoff_request_seconds * 1000000
        END AS requested_backoff_until,
        -- Rule 7: the failure backoff, backoff(n) = min(base * 2^n, max),
        -- exactly engine.Backoff: base << n <= max iff base <= max >> n, and
        -- past 40 doublings any base >= 1ms exceeds any max <= 24h.
        CASE WHEN s.state = 'error' AND s.last_failure_at IS NOT NULL
             THEN s.last_failure_at +
                  CASE WHEN s.attempts >= 40 OR s.backoff_base_us > (s.backoff_max_us >> s.attempts)
                       THEN s.backoff_max_us
                       ELSE s.backoff_base_us << s.attempts
                  END
        END AS failure_backoff_until
    FROM candidate_steps s
),
readiness_rules AS (
    SELECT
        b.*,
        -- Rules 3 and 4.
        (b.attempts < b.retry_limit AND (b.retryable <> 0 OR b.attempts = 0)) AS retry_eligible,
        -- The later of the backoff expiries that apply.
        CASE WHEN b.requested_backoff_until IS NULL THEN b.failure_backoff_until
             WHEN b.failure_backoff_until IS NULL THEN b.requested_backoff_until
             ELSE max(b.requested_backoff_until, b.failure_backoff_until)
        END AS next_retry_at
    FROM readiness_base b
),
step_readiness AS (
    SELECT
        r.*,
        -- Rule 1, rule 5 (a live lease expires after now), rules 6 and 7
        -- together, and the rest.
        -- The dependency subquery is asked last, and only when the cheap
        -- rules hold (CASE evaluates lazily).
        CASE WHEN r.state IN ('pending', 'error')
                  AND r.retry_eligible
                  AND (r.lease_expires_at IS NULL OR r.lease_expires_at <= @now)
                  AND (r.next_retry_at IS NULL OR r.next_retry_at <= @now)
             THEN r.dependencies_satisfied
             ELSE 0
        END AS ready_for_execution
    FROM readiness_rules r
)
