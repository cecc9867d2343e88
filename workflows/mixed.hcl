# Fan-out, a chain, a shortcut edge and a fan-in in one graph: dependency
# levels are longest paths, so "publish" is at level 4 although it also
# depends directly on the level-0 "ingest".
workflow "mixed" {
  description = "fan-out, chain, shortcut and fan-in together"

  retry {
    limit = 4
    base  = "500ms"
    max   = "10s"
  }

  step "ingest" {
    handler = "builtin.noop"
  }

  step "validate_schema" {
    handler    = "builtin.echo"
    depends_on = [step.ingest]
  }
  step "enrich" {
    handler    = "builtin.echo"
    depends_on = [step.ingest]
  }
  step "score" {
    handler    = "builtin.echo"
    depends_on = [step.enrich]
    retry {
      limit = 6
    }
  }

  step "review" {
    handler    = "builtin.echo"
    depends_on = [step.validate_schema, step.score]
    skippable  = true
  }

  step "publish" {
    handler    = "builtin.echo"
    depends_on = [step.review, step.ingest]
  }

  step "audit_log" {
    handler    = "builtin.noop"
    depends_on = [step.ingest]
    retryable  = false
  }
}
