package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// Cluster is the `cluster` block: how this node takes part in a cluster
// of serve nodes sharing one database (docs/cluster.md).
type Cluster struct {
	// Heartbeat is the interval of the node's heartbeats and leadership
	// renewals (0: the default, 2s). A node silent for three is dead.
	Heartbeat time.Duration
	// Address is where this node's API answers, as others should reach
	// it ("": the listen address).
	Address string
}

// DefaultScheduleFiringsRetention is how long schedule firings are kept
// when retention.schedule_firings is not set: firings are small, but a
// bound on their growth matters more on a small disk than keeping them
// forever.
const DefaultScheduleFiringsRetention = 90 * 24 * time.Hour

// Retention is the `retention` block.
type Retention struct {
	// FinishedTasks: finished tasks (complete, cancelled,
	// resolved_manually) whose last change is older than this are deleted
	// with their steps, transitions and events. 0 keeps them forever.
	FinishedTasks time.Duration
	// ScheduleFirings: the records of schedule firings made longer ago
	// than this are deleted, except each schedule's last one and those
	// whose task is unfinished. 0: the default,
	// DefaultScheduleFiringsRetention.
	ScheduleFirings time.Duration
}

type clusterBody struct {
	Heartbeat *string `hcl:"heartbeat,optional"`
	Address   *string `hcl:"address,optional"`
}

type retentionBody struct {
	FinishedTasks   *string `hcl:"finished_tasks,optional"`
	ScheduleFirings *string `hcl:"schedule_firings,optional"`
}

func decodeCluster(b *hcl.Block) (*Cluster, hcl.Diagnostics) {
	var cb clusterBody
	diags := gohcl.DecodeBody(b.Body, nil, &cb)
	if diags.HasErrors() {
		return nil, diags
	}
	c := &Cluster{}
	diags = append(diags, positiveDuration(b, "heartbeat", "2s", cb.Heartbeat, &c.Heartbeat)...)
	if cb.Address != nil {
		c.Address = *cb.Address
		u, err := url.Parse(c.Address)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			diags = append(diags, errorAt(attrRange(b, "address"), "Invalid cluster address",
				fmt.Sprintf("cluster.address must be this node's http:// or https:// URL, such as \"http://10.0.0.5:8080\", not %q.", c.Address)))
		}
	}
	return c, diags
}

func decodeRetention(b *hcl.Block) (*Retention, hcl.Diagnostics) {
	var rb retentionBody
	diags := gohcl.DecodeBody(b.Body, nil, &rb)
	if diags.HasErrors() {
		return nil, diags
	}
	r := &Retention{}
	diags = append(diags, retentionAge(b, "finished_tasks", "30d", rb.FinishedTasks, &r.FinishedTasks)...)
	diags = append(diags, retentionAge(b, "schedule_firings", "90d", rb.ScheduleFirings, &r.ScheduleFirings)...)
	return r, diags
}

// retentionAge reads the retention age attr (nil: not set, dst kept): a
// positive duration, in days or Go's units.
func retentionAge(b *hcl.Block, attr, example string, src *string, dst *time.Duration) hcl.Diagnostics {
	if src == nil {
		return nil
	}
	d, err := parseDays(*src)
	if err != nil || d <= 0 {
		return hcl.Diagnostics{errorAt(attrRange(b, attr), "Invalid "+attr,
			fmt.Sprintf("retention.%s must be a positive duration such as %q or \"12h\", not %q.", attr, example, *src))}
	}
	*dst = d
	return nil
}

// parseDays is time.ParseDuration that also accepts whole days, alone
// ("30d") or before the rest ("1d12h"): retention is counted in days.
func parseDays(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(days)
	if err != nil || n < 0 || n > 100*365 {
		return 0, fmt.Errorf("invalid number of days %q", days)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return d, nil
	}
	more, err := time.ParseDuration(rest)
	if err != nil {
		return 0, err
	}
	return d + more, nil
}
