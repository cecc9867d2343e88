-- 0005: the namespaces that hold tasks, one row each, written when a task
-- is created (tasks are never deleted), so that the API can filter a
-- listing by namespace without scanning the tasks.
CREATE TABLE task_namespaces (
    namespace text PRIMARY KEY
);

INSERT INTO task_namespaces (namespace) SELECT DISTINCT namespace FROM tasks;
