package definition

import (
	"github.com/hashicorp/hcl/v2"
)

var retrySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "limit"},
		{Name: "base"},
		{Name: "max"},
	},
}

// decodeRetry reads a retry block over inherited values: a step's
// retry { limit = 5 } keeps its workflow's base and max.
func decodeRetry(block *hcl.Block, inherited RetryPolicy) (RetryPolicy, hcl.Diagnostics) {
	r := inherited
	content, diags := block.Body.Content(retrySchema)
	if attr, ok := content.Attributes["limit"]; ok {
		n, more := evalInt(attr)
		diags = append(diags, more...)
		if !more.HasErrors() {
			if n < 1 {
				diags = append(diags, errAt(attr.Expr.Range(), "Invalid retry limit",
					"limit is the total number of executions allowed, retries included, so it must be at least 1, not %d.", n))
			} else {
				r.Limit = n
			}
		}
	}
	baseAttr, hasBase := content.Attributes["base"]
	if hasBase {
		d, more := evalDuration(baseAttr)
		diags = append(diags, more...)
		switch {
		case more.HasErrors():
		case d < MinRetryBase:
			diags = append(diags, errAt(baseAttr.Expr.Range(), "Invalid retry backoff",
				"base must be at least %s, not %s.", MinRetryBase, d))
		default:
			r.Base = d
		}
	}
	maxAttr, hasMax := content.Attributes["max"]
	if hasMax {
		d, more := evalDuration(maxAttr)
		diags = append(diags, more...)
		switch {
		case more.HasErrors():
		case d > MaxRetryMax:
			diags = append(diags, errAt(maxAttr.Expr.Range(), "Invalid retry backoff",
				"max must be at most %s, not %s: a longer wait is a schedule, not a retry.", MaxRetryMax, d))
		default:
			r.Max = d
		}
	}
	if r.Base > r.Max && !diags.HasErrors() {
		// Point at what this block wrote; the other value may be inherited.
		subject := block.DefRange
		switch {
		case hasBase:
			subject = baseAttr.Expr.Range()
		case hasMax:
			subject = maxAttr.Expr.Range()
		}
		diags = append(diags, errAt(subject, "Invalid retry backoff",
			"base (%s) is longer than max (%s); backoff(n) = min(base × 2^n, max) needs base <= max.", r.Base, r.Max))
	}
	return r, diags
}
