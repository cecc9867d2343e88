# A chain of six steps: each runs after the one before it.
# Tasker's "linear workflow" test scenario.
workflow "linear" {
  description = "Six steps in a line"

  retry {
    limit = 3
    base  = "1s"
    max   = "30s"
  }
  timeout = "30s"

  step "step_1" {
    handler = "builtin.echo"
  }
  step "step_2" {
    handler    = "builtin.echo"
    depends_on = [step.step_1]
  }
  step "step_3" {
    handler    = "builtin.echo"
    depends_on = [step.step_2]
  }
  step "step_4" {
    handler    = "builtin.echo"
    depends_on = [step.step_3]
  }
  step "step_5" {
    handler    = "builtin.echo"
    depends_on = [step.step_4]
  }
  step "step_6" {
    handler    = "builtin.echo"
    depends_on = [step.step_5]
  }
}
