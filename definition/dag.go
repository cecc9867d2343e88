package definition

import (
	"cmp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// resolveGraph checks every dependency of the workflow's steps (it exists, it
// is not the step itself, the graph has no cycle) and, when the graph is a
// DAG, computes levels, a topological order and each step's children.
func (w *Workflow) resolveGraph() hcl.Diagnostics {
	var diags hcl.Diagnostics
	n := len(w.Steps)
	parents := make([][]int, n) // valid parent indexes, in depends_on order
	suggestions := 0
	for _, s := range w.Steps {
		for i, dep := range s.DependsOn {
			r := s.DependsOnRanges[i]
			p, ok := w.byName[dep]
			switch {
			case dep == s.Name:
				diags = append(diags, errAt(r, "Step depends on itself",
					"Step %q lists step.%s in its own depends_on; a step cannot wait for itself.", s.Name, dep))
			case !ok:
				hint := ""
				if suggestions < maxSuggestions {
					suggestions++
					hint = suggestStep(w, dep)
				}
				diags = append(diags, errAt(r, "Reference to undeclared step",
					"Step %q depends on step.%s, but workflow %q has no step %q.%s", s.Name, dep, w.Name, dep, hint))
			default:
				parents[s.Index] = append(parents[s.Index], p.Index)
			}
		}
	}
	children := make([][]int, n)
	for c, ps := range parents {
		for _, p := range ps {
			children[p] = append(children[p], c)
		}
	}
	for _, cyc := range findCycles(parents, children) {
		// The edge that closes the cycle (last → first) is written in the first
		// step's depends_on: point there.
		first, last := w.Steps[cyc[0]], w.Steps[cyc[len(cyc)-1]]
		names := make([]string, 0, len(cyc)+1)
		for _, i := range cyc {
			names = append(names, w.Steps[i].Name)
		}
		names = append(names, first.Name)
		subject := first.DependsOnRanges[slices.Index(first.DependsOn, last.Name)]
		diags = append(diags, errAt(subject, "Dependency cycle",
			"Steps of workflow %q form a cycle: %s. Each step waits for the one before it, so none of them can ever start.",
			w.Name, strings.Join(names, " -> ")))
	}
	if diags.HasErrors() {
		return diags
	}
	w.computeLevels(parents, children)
	return nil
}

// findCycles returns one cycle per strongly connected component of more than
// one step, as step indexes in execution order (each provides for the next,
// and the last provides for the first). Cycles are deterministic: each starts
// at the earliest-declared step of its component and is the shortest cycle
// through it.
func findCycles(parents, children [][]int) [][]int {
	comp := stronglyConnected(children)
	members := map[int][]int{}
	for v, c := range comp {
		members[c] = append(members[c], v)
	}
	var cycles [][]int
	for _, ms := range members {
		if len(ms) < 2 {
			continue
		}
		start := slices.Min(ms)
		c := comp[start]
		// Breadth-first along child edges inside the component, back to start.
		prev := map[int]int{start: -1}
		queue := []int{start}
		var end = -1
	search:
		for len(queue) > 0 {
			v := queue[0]
			queue = queue[1:]
			for _, ch := range children[v] {
				if comp[ch] != c {
					continue
				}
				if ch == start {
					end = v
					break search
				}
				if _, seen := prev[ch]; !seen {
					prev[ch] = v
					queue = append(queue, ch)
				}
			}
		}
		var cyc []int
		for v := end; v != -1; v = prev[v] {
			cyc = append(cyc, v)
		}
		slices.Reverse(cyc)
		cycles = append(cycles, cyc)
	}
	slices.SortFunc(cycles, func(a, b []int) int { return cmp.Compare(a[0], b[0]) })
	return cycles
}

// stronglyConnected labels each vertex with its component (Tarjan's
// algorithm, iterative so that a long chain cannot overflow the stack).
func stronglyConnected(adj [][]int) []int {
	n := len(adj)
	index := make([]int, n)
	low := make([]int, n)
	comp := make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	next, ncomp := 0, 0
	type frame struct{ v, edge int }
	for root := 0; root < n; root++ {
		if index[root] >= 0 {
			continue
		}
		calls := []frame{{root, 0}}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(calls) > 0 {
			f := &calls[len(calls)-1]
			v := f.v
			if f.edge < len(adj[v]) {
				w := adj[v][f.edge]
				f.edge++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					calls = append(calls, frame{w, 0})
				} else if onStack[w] {
					low[v] = min(low[v], index[w])
				}
				continue
			}
			if low[v] == index[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = ncomp
					if w == v {
						break
					}
				}
				ncomp++
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				u := calls[len(calls)-1].v
				low[u] = min(low[u], low[v])
			}
		}
	}
	return comp
}

// computeLevels sets each step's level (longest path from a root) and the
// workflow's levels, order and children. The graph must be acyclic.
func (w *Workflow) computeLevels(parents, children [][]int) {
	n := len(w.Steps)
	// Kahn's algorithm; any topological order works to compute longest paths.
	indeg := make([]int, n)
	for v := range n {
		indeg[v] = len(parents[v])
	}
	queue := make([]int, 0, n)
	for v := range n {
		if indeg[v] == 0 {
			queue = append(queue, v)
		}
	}
	for i := 0; i < len(queue); i++ {
		v := queue[i]
		for _, c := range children[v] {
			w.Steps[c].Level = max(w.Steps[c].Level, w.Steps[v].Level+1)
			if indeg[c]--; indeg[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	w.order = slices.Clone(w.Steps)
	slices.SortStableFunc(w.order, func(a, b *Step) int { return cmp.Compare(a.Level, b.Level) })
	w.levels = nil
	for _, s := range w.order {
		if s.Level == len(w.levels) {
			w.levels = append(w.levels, nil)
		}
		w.levels[s.Level] = append(w.levels[s.Level], s)
	}
	w.child = make([][]*Step, n)
	for v, cs := range children {
		for _, c := range cs {
			w.child[v] = append(w.child[v], w.Steps[c])
		}
	}
}

// maxSuggestions bounds how many undeclared references of one workflow get
// a "did you mean": each looks at every step, and a file with thousands of
// bad references would otherwise cost the square of its size. Only the
// first MaxPrintedDiagnostics diagnostics are printed anyway.
const maxSuggestions = MaxPrintedDiagnostics

// suggestStep offers a step name within edit distance 2 of a mistyped
// reference, the closest (and first declared) one.
func suggestStep(w *Workflow, name string) string {
	best, bestDist := "", 3
	for _, s := range w.Steps {
		if d := editDistanceWithin(name, s.Name, bestDist-1); d < bestDist {
			best, bestDist = s.Name, d
		}
	}
	if best == "" {
		return ""
	}
	return " Did you mean step." + best + "?"
}

// editDistanceWithin returns the Levenshtein distance of a and b (bytes
// inserted, deleted or replaced) when it is at most k, and k+1 otherwise.
// It only fills the band of the table within k of its diagonal, and stops
// as soon as a row has no cell within k, so its cost is O(k·len(a)) at
// most, and less for names that differ early.
func editDistanceWithin(a, b string, k int) int {
	far := k + 1
	if len(a)-len(b) > k || len(b)-len(a) > k {
		return far
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = min(j, far)
	}
	for i := 1; i <= len(a); i++ {
		lo, hi := max(1, i-k), min(len(b), i+k)
		// The cell left of the band: column 0, or outside it.
		if lo == 1 {
			cur[0] = min(i, far)
		} else {
			cur[lo-1] = far
		}
		rowMin := cur[lo-1]
		for j := lo; j <= hi; j++ {
			d := prev[j-1] // replace (or keep)
			if a[i-1] != b[j-1] {
				d++
			}
			d = min(d, cur[j-1]+1) // insert
			if j <= i-1+k {        // prev[j] is in the previous row's band
				d = min(d, prev[j]+1) // delete
			}
			cur[j] = min(d, far)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= far {
			return far
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
