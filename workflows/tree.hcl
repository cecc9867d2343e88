# One root, two setup steps, four leaves (two under each setup), and an
# aggregate that waits for every leaf. Tasker's "tree workflow" scenario.
workflow "tree" {
  description = "root -> 2 setups -> 4 leaves -> aggregate"

  step "root" {
    handler = "builtin.noop"
  }

  step "setup_a" {
    handler    = "builtin.echo"
    depends_on = [step.root]
  }
  step "setup_b" {
    handler    = "builtin.echo"
    depends_on = [step.root]
  }

  step "leaf_a1" {
    handler    = "builtin.echo"
    depends_on = [step.setup_a]
  }
  step "leaf_a2" {
    handler    = "builtin.echo"
    depends_on = [step.setup_a]
  }
  step "leaf_b1" {
    handler    = "builtin.echo"
    depends_on = [step.setup_b]
  }
  step "leaf_b2" {
    handler    = "builtin.echo"
    depends_on = [step.setup_b]
  }

  step "aggregate" {
    handler    = "builtin.echo"
    depends_on = [step.leaf_a1, step.leaf_a2, step.leaf_b1, step.leaf_b2]
  }
}
