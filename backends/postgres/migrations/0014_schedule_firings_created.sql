-- 0014: retention of schedule firings. The leader deletes old firings a
-- batch at a time, oldest recorded first (DeleteScheduleFirings), every
-- heartbeat: this index finds them without reading the whole table, which
-- holds some 130,000 rows per every-minute schedule at the default 90 days.
CREATE INDEX schedule_firings_created ON schedule_firings (created_at);
