package definition

import (
	"fmt"
	"slices"
	"strings"
)

// Catalog is a set of loaded workflows, several versions of one workflow side
// by side. It is read-only once built and safe for concurrent use.
type Catalog struct {
	all    []*Workflow
	byName map[string][]*Workflow // namespace/name → versions, highest first
	limits map[string]int         // namespace/name → concurrency

	schedules []*Schedule // sorted by name
}

// WithSchedules returns a catalog of c's workflows and these schedules
// (Parser.Schedules: each names a workflow of c).
func (c *Catalog) WithSchedules(schedules []*Schedule) *Catalog {
	cc := *c
	cc.schedules = slices.Clone(schedules)
	slices.SortFunc(cc.schedules, func(a, b *Schedule) int { return strings.Compare(a.Name, b.Name) })
	return &cc
}

// Schedules returns the catalog's schedules, sorted by name.
func (c *Catalog) Schedules() []*Schedule { return c.schedules }

// Schedule returns the schedule of that name, or nil.
func (c *Catalog) Schedule(name string) *Schedule {
	i, ok := slices.BinarySearchFunc(c.schedules, name, func(s *Schedule, n string) int { return strings.Compare(s.Name, n) })
	if !ok {
		return nil
	}
	return c.schedules[i]
}

// NewCatalog indexes workflows. Identities must be unique (Load guarantees it).
func NewCatalog(workflows []*Workflow) *Catalog {
	c := &Catalog{byName: map[string][]*Workflow{}}
	c.all = slices.Clone(workflows)
	slices.SortFunc(c.all, compareWorkflows)
	for _, w := range c.all {
		c.byName[w.FullName()] = append(c.byName[w.FullName()], w)
	}
	c.limits = map[string]int{}
	for name, versions := range c.byName {
		if n := versions[0].Concurrency; n > 0 {
			c.limits[name] = n
		}
	}
	return c
}

// ConcurrencyLimits maps namespace/name to the concurrency limit of the
// workflow, for every workflow that has one. The limit is the highest loaded
// version's: it caps the running steps of every version's tasks together
// (they share whatever the limit protects), and the newest definition is
// the current policy, so publishing a version with another limit (or none)
// changes it for all, while older versions stay loaded only to finish their
// tasks. The map is shared: callers must not change it.
func (c *Catalog) ConcurrencyLimits() map[string]int { return c.limits }

// compareWorkflows orders by namespace, name, then version highest first.
func compareWorkflows(a, b *Workflow) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return b.Version.Compare(a.Version)
}

// All returns every workflow, sorted by namespace, name and version (highest
// first).
func (c *Catalog) All() []*Workflow { return c.all }

// Versions returns the loaded versions of namespace/name, highest first.
func (c *Catalog) Versions(namespace, name string) []*Workflow {
	return c.byName[namespace+"/"+name]
}

// Lookup finds the workflow a reference names: the exact version when it has
// one, else the highest loaded version.
func (c *Catalog) Lookup(ref Ref) (*Workflow, error) {
	versions := c.byName[ref.Namespace+"/"+ref.Name]
	if len(versions) == 0 {
		return nil, &UnknownWorkflowError{Ref: ref, Known: c.names()}
	}
	if ref.Version == nil {
		return versions[0], nil
	}
	for _, w := range versions {
		if w.Version == *ref.Version {
			return w, nil
		}
	}
	var have []string
	for _, w := range versions {
		have = append(have, w.Version.String())
	}
	return nil, &UnknownWorkflowError{Ref: ref, Known: have, VersionsOnly: true}
}

func (c *Catalog) names() []string {
	var names []string
	for name := range c.byName {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// UnknownWorkflowError says a reference names no loaded workflow or version.
type UnknownWorkflowError struct {
	Ref Ref
	// Known lists what is loaded: namespace/name values, or when
	// VersionsOnly, the versions of the named workflow.
	Known        []string
	VersionsOnly bool
}

func (e *UnknownWorkflowError) Error() string {
	if e.VersionsOnly {
		return fmt.Sprintf("workflow %s has no version %s (loaded: %s)", e.Ref.Namespace+"/"+e.Ref.Name, e.Ref.Version, strings.Join(e.Known, ", "))
	}
	if len(e.Known) == 0 {
		return fmt.Sprintf("unknown workflow %s: no workflows are loaded", e.Ref)
	}
	return fmt.Sprintf("unknown workflow %s (loaded: %s)", e.Ref, strings.Join(e.Known, ", "))
}
