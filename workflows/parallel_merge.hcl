# Four independent roots, two of them with a child of their own; everything
# feeds merge_all. Tasker's "parallel merge" scenario.
workflow "parallel_merge" {
  description = "4 roots (two with a child) -> merge_all"

  step "fetch_a" {
    handler = "builtin.echo"
  }
  step "fetch_b" {
    handler = "builtin.echo"
  }
  step "fetch_c" {
    handler = "builtin.echo"
  }
  step "fetch_d" {
    handler = "builtin.echo"
  }

  step "transform_a" {
    handler    = "builtin.echo"
    depends_on = [step.fetch_a]
  }
  step "transform_b" {
    handler    = "builtin.echo"
    depends_on = [step.fetch_b]
  }

  step "merge_all" {
    handler    = "builtin.echo"
    depends_on = [step.transform_a, step.transform_b, step.fetch_c, step.fetch_d]
  }
}
