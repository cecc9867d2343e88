# start fans out to two branches of two steps each, which merge again.
# Tasker's "diamond workflow" test scenario.
workflow "diamond" {
  description = "start -> two branches of two steps -> merge -> end"

  step "start" {
    handler = "builtin.noop"
  }

  step "branch_a1" {
    handler    = "builtin.echo"
    depends_on = [step.start]
  }
  step "branch_a2" {
    handler    = "builtin.echo"
    depends_on = [step.branch_a1]
  }

  step "branch_b1" {
    handler    = "builtin.echo"
    depends_on = [step.start]
  }
  step "branch_b2" {
    handler    = "builtin.echo"
    depends_on = [step.branch_b1]
  }

  step "merge" {
    handler    = "builtin.echo"
    depends_on = [step.branch_a2, step.branch_b2]
  }
  step "end" {
    handler    = "builtin.noop"
    depends_on = [step.merge]
  }
}
