-- 0002: steps.unsatisfied_parents, a pre-filter for the claim.
--
-- The number of the step's parents that are not yet complete or
-- resolved_manually. Both states are terminal, so the count only goes down:
-- it is set when the step is created (bypassed parents already count as
-- satisfied) and decremented for every child each time a step enters one of
-- them (moveStep, the one place steps change state). It is NOT the
-- definition of dependencies_satisfied, which stays the NOT EXISTS rule of
-- sql/readiness.sql: the claim and NextWakeup use it only to skip, through
-- the partial index below, steps that cannot be ready, instead of asking the
-- dependency subquery of every pending step of every task in flight.
ALTER TABLE steps ADD COLUMN unsatisfied_parents INTEGER NOT NULL DEFAULT 0
    CHECK (unsatisfied_parents >= 0);

-- Databases written by 0001: count what is unsatisfied today.
UPDATE steps SET unsatisfied_parents = (
    SELECT count(*)
      FROM edges e JOIN steps p ON p.id = e.parent_step_id
     WHERE e.child_step_id = steps.id
       AND p.state NOT IN ('complete', 'resolved_manually'))
 WHERE id IN (SELECT child_step_id FROM edges);

-- Claims scan only steps that may still run and whose parents are all done:
-- finished history (complete, cancelled, resolved_manually), however large,
-- and the not-yet-runnable rest of the tasks in flight are not in this
-- index, so claim cost grows with neither. Its order is the claim order
-- within a task.
DROP INDEX steps_claimable;
CREATE INDEX steps_claimable ON steps (task_id, position)
    WHERE state IN ('pending', 'error') AND unsatisfied_parents = 0;
