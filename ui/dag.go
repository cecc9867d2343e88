package ui

import (
	"fmt"
	"net/url"
	"strconv"
)

// The DAG is drawn left to right: a column per level (a step's level is
// the longest path from a root), a box per step, a curve per edge.
const (
	nodeW, nodeH = 200, 64
	gapX, gapY   = 56, 16
	margin       = 8
)

type dagView struct {
	Width, Height int
	Nodes         []dagNode
	Edges         []dagEdge
}

type dagNode struct {
	X, Y, W, H int
	TextX      int
	Name       string // shown, truncated
	FullName   string
	Status     string // "" for a workflow's step (no task yet)
	Attempts   int
	Detail     string // the second line
	Error      string // the latest error, truncated
	FullError  string
	Href       string
}

type dagEdge struct {
	Path   string
	Status string // the child's
}

func buildDAG(levels [][]string, edges []edgeJSON, steps []stepJSON, hrefBase string) *dagView {
	byName := map[string]stepJSON{}
	for _, s := range steps {
		byName[s.Name] = s
	}
	v := &dagView{}
	pos := map[string]int{}
	rows := 0
	for l, names := range levels {
		rows = max(rows, len(names))
		for i, name := range names {
			n := dagNode{X: margin + l*(nodeW+gapX), Y: margin + i*(nodeH+gapY), W: nodeW, H: nodeH, Name: trimTo(name, 26), FullName: name}
			n.TextX = n.X + 10
			if s, ok := byName[name]; ok {
				n.Status, n.Attempts = s.Status, s.Attempts
				n.Detail = fmt.Sprintf("%s · attempts %d", s.Status, s.Attempts)
				n.FullError = errorMessage(s.Error)
				// A step that succeeded since keeps its last failure in
				// the title only: in the box it would read as current.
				if s.Status != "complete" && s.Status != "resolved_manually" {
					n.Error = trimTo(n.FullError, 30)
				}
				if hrefBase != "" {
					n.Href = hrefBase + url.PathEscape(name)
				}
			} else if steps == nil {
				n.Detail = "step"
			}
			v.Nodes = append(v.Nodes, n)
			pos[name] = len(v.Nodes) - 1
		}
	}
	for _, e := range edges {
		ai, aok := pos[e.From]
		bi, bok := pos[e.To]
		if !aok || !bok {
			continue
		}
		a, b := v.Nodes[ai], v.Nodes[bi]
		x1, y1 := a.X+a.W, a.Y+a.H/2
		x2, y2 := b.X, b.Y+b.H/2
		mx := (x1 + x2) / 2
		v.Edges = append(v.Edges, dagEdge{Status: b.Status,
			Path: "M" + strconv.Itoa(x1) + " " + strconv.Itoa(y1) + " C" + strconv.Itoa(mx) + " " + strconv.Itoa(y1) + " " +
				strconv.Itoa(mx) + " " + strconv.Itoa(y2) + " " + strconv.Itoa(x2-4) + " " + strconv.Itoa(y2)})
	}
	v.Width = 2*margin + len(levels)*(nodeW+gapX) - gapX
	v.Height = 2*margin + rows*(nodeH+gapY) - gapY
	if len(levels) == 0 {
		v.Width, v.Height = 2*margin, 2*margin
	}
	return v
}
