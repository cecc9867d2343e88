-- 0003: transitions.most_recent is derived when read, not stored.
--
-- Keeping a stored flag exact cost an UPDATE of the previous row (and of a
-- unique partial index) for every transition written: about a third of the
-- writes of a one-step task. The most recent transition of an object is the
-- one with its highest sort_key; transitions_step_sort_key and
-- transitions_task_sort_key already find that by an index seek, both when a
-- transition is numbered (insertTransitionSQL) and when the trail is read
-- (ListTransitions).
DROP INDEX transitions_step_most_recent;
DROP INDEX transitions_task_most_recent;
ALTER TABLE transitions DROP COLUMN most_recent;
