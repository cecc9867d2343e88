-- 0011: lease writes that PostgreSQL can make HOT updates.
--
-- A step's start (StartStep) and its heartbeats (ExtendLeases) change only
-- lease_expires_at (and started_at). steps_running indexed lease_expires_at,
-- so each of those writes was a non-HOT update: a new row version with a
-- new entry in every index of steps (its key, (task_id, position),
-- (task_id, name), ...), and the WAL to match. steps_running now holds the
-- ids of the running steps: an id never changes, so a lease write changes
-- no indexed column and, when the row's page has room, is a HOT update.
-- The running steps are few (each node's workers and claim-ahead places):
-- lease recovery and the next wake-up read them all through this index and
-- sort them by expiry, as cheap as reading them in expiry order was.
--
-- fillfactor leaves a tenth of each new page of steps free for the new
-- versions of its rows (pages written before keep theirs full).
DROP INDEX steps_running;
CREATE INDEX steps_running ON steps (id) WHERE state = 'in_progress';
ALTER TABLE steps SET (fillfactor = 90);
