// Package definition reads workflow definitions written in HCL and turns them
// into validated DAGs.
//
// A workflow file holds one or more workflow blocks:
//
//	workflow "order_fulfillment" {
//	  namespace = "ecommerce"
//	  version   = "1.2.0"
//
//	  step "validate" { handler = "builtin.noop" }
//	  step "charge" {
//	    handler    = "payments.charge"
//	    depends_on = [step.validate]
//	  }
//	}
//
// Everything the rest of taskerd needs to know about a workflow (its identity,
// steps, dependencies, retry policy, timeouts, context schema, dependency
// levels and a topological order) is on the Workflow value. Every problem in a
// file is reported as an hcl.Diagnostic whose subject points at the offending
// expression, and all problems of a file are reported at once.
//
// The package is pure: it reads the files it is given and nothing else, and it
// knows nothing of storage, plugins or the engine.
package definition
