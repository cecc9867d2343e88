# A starter workflow, written by `taskerd init`: greet, then two steps side
# by side, then merge. Built-in handlers only, so it runs with no plugin.
# Create a task:  taskerd task create hello --context '{"name": "Ada"}'
# Reference: docs/workflows.md in the taskerd repository.
workflow "hello" {
  description = "greet -> (wait, echo) -> merge"

  context_schema = {
    type = "object"
    properties = {
      name = { type = "string" }
    }
  }

  retry {
    limit = 3
    base  = "1s"
    max   = "30s"
  }

  step "greet" {
    # Once plugins/hello is enabled in taskerd.hcl: handler = "hello.greet"
    handler = "builtin.echo"
  }
  step "wait" {
    handler    = "builtin.sleep"
    depends_on = [step.greet]
    config     = { duration = "200ms" }
  }
  step "echo" {
    handler    = "builtin.echo"
    depends_on = [step.greet]
  }
  step "merge" {
    handler    = "builtin.echo"
    depends_on = [step.wait, step.echo]
  }
}
