package backends

import (
	"maps"
	"slices"
)

// WorkflowKey is how ClaimStepsParams.Limits names a workflow: all its
// versions together.
func WorkflowKey(namespace, name string) string { return namespace + "/" + name }

// ClaimCaps is a claim's account of its concurrency limits
// (ClaimStepsParams.Limits), for the stores: how many more steps of each
// limited workflow the claim may take, given how many are in_progress.
type ClaimCaps struct {
	limits map[string]int
	left   map[string]int
}

// NewClaimCaps starts the account as if nothing were in_progress; Reset
// gives it the counts.
func NewClaimCaps(limits map[string]int) *ClaimCaps {
	c := &ClaimCaps{limits: limits}
	c.Reset(nil)
	return c
}

// Reset starts the account again from the in_progress counts in running.
func (c *ClaimCaps) Reset(running map[string]int) {
	c.left = make(map[string]int, len(c.limits))
	for k, n := range c.limits {
		c.left[k] = n - running[k]
	}
}

// Keys lists the limited workflows, sorted (the order in which a store
// that locks them must lock them, so that two claims never wait for each
// other in a cycle).
func (c *ClaimCaps) Keys() []string { return slices.Sorted(maps.Keys(c.limits)) }

// Limited says whether the workflow has a limit.
func (c *ClaimCaps) Limited(key string) bool {
	_, ok := c.limits[key]
	return ok
}

// Full lists the limited workflows that may take no more steps, sorted.
func (c *ClaimCaps) Full() []string {
	full := []string{}
	for k, n := range c.left {
		if n <= 0 {
			full = append(full, k)
		}
	}
	slices.Sort(full)
	return full
}

// Take counts one more step of the workflow into the claim, unless its
// limit is reached: false then, and the step must not be claimed.
func (c *ClaimCaps) Take(key string) bool {
	n, ok := c.left[key]
	if !ok {
		return true
	}
	if n <= 0 {
		return false
	}
	c.left[key] = n - 1
	return true
}
