package graphql

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// depthLimit refuses an operation whose selections nest deeper than max
// (fragments counted where they are spread), before anything resolves.
type depthLimit struct{ max int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = depthLimit{}

func (depthLimit) ExtensionName() string                   { return "DepthLimit" }
func (depthLimit) Validate(graphql.ExecutableSchema) error { return nil }
func (d depthLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	if depth := selectionDepth(oc.Operation.SelectionSet, oc.Doc.Fragments, 0); depth > d.max {
		err := gqlerror.Errorf("operation has depth %d, over the limit %d", depth, d.max)
		err.Extensions = map[string]any{"code": "DEPTH_LIMIT_EXCEEDED"}
		return err
	}
	return nil
}

// selectionDepth is the depth of set; seen guards against fragment cycles
// (which validation refuses anyway) by bounding the recursion.
func selectionDepth(set ast.SelectionSet, frags ast.FragmentDefinitionList, level int) int {
	if level > 100 {
		return level
	}
	max := level
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			if len(s.SelectionSet) == 0 {
				d = level + 1
			} else {
				d = selectionDepth(s.SelectionSet, frags, level+1)
			}
		case *ast.InlineFragment:
			d = selectionDepth(s.SelectionSet, frags, level)
		case *ast.FragmentSpread:
			if f := frags.ForName(s.Name); f != nil {
				d = selectionDepth(f.SelectionSet, frags, level)
			}
		}
		if d > max {
			max = d
		}
	}
	return max
}
