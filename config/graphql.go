package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// GraphQL is the `graphql` block: the limits of one operation on
// /v1/graphql (serve; docs/graphql.md#limits). A field left out is 0, for
// the default (graphql.DefaultMaxDepth, graphql.DefaultMaxComplexity).
type GraphQL struct {
	// MaxDepth is the deepest selection allowed (fragments counted where
	// they are spread).
	MaxDepth int
	// MaxComplexity bounds the operation's complexity (each field 1 plus
	// its children, a page's children once per item asked for).
	MaxComplexity int
}

type graphqlBody struct {
	MaxDepth      *int `hcl:"max_depth,optional"`
	MaxComplexity *int `hcl:"max_complexity,optional"`
}

func decodeGraphQL(b *hcl.Block) (*GraphQL, hcl.Diagnostics) {
	var gb graphqlBody
	diags := gohcl.DecodeBody(b.Body, nil, &gb)
	if diags.HasErrors() {
		return nil, diags
	}
	g := &GraphQL{}
	atLeastOne := func(name string, v *int, dst *int) {
		if v == nil {
			return
		}
		if *v < 1 {
			diags = append(diags, errorAt(attrRange(b, name), "Invalid "+name,
				fmt.Sprintf("graphql.%s must be at least 1, not %d.", name, *v)))
			return
		}
		*dst = *v
	}
	atLeastOne("max_depth", gb.MaxDepth, &g.MaxDepth)
	atLeastOne("max_complexity", gb.MaxComplexity, &g.MaxComplexity)
	return g, diags
}
