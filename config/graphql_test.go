package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/config"
)

func TestGraphQLBlock(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("taskerd.hcl", []byte("listen = \":8080\"\n"))
	require.NoError(t, err)
	require.Nil(t, c.GraphQL, "no block: serve's defaults")

	c, err = config.Parse("taskerd.hcl", []byte("graphql {\n  max_depth      = 12\n  max_complexity = 50000\n}\n"))
	require.NoError(t, err)
	require.Equal(t, &config.GraphQL{MaxDepth: 12, MaxComplexity: 50000}, c.GraphQL)

	c, err = config.Parse("taskerd.hcl", []byte("graphql {\n  max_depth = 1\n}\n"))
	require.NoError(t, err)
	require.Equal(t, &config.GraphQL{MaxDepth: 1}, c.GraphQL, "the other is left to its default")

	c, err = config.Parse("taskerd.hcl", []byte("graphql {\n}\n"))
	require.NoError(t, err)
	require.Equal(t, &config.GraphQL{}, c.GraphQL, "an empty block: both defaults")
}

func TestGraphQLBlockErrors(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct {
		src  string
		want []string
	}{
		"zero depth":          {"graphql {\n  max_depth = 0\n}\n", []string{`taskerd.hcl:2:15: Invalid max_depth: graphql.max_depth must be at least 1, not 0.`}},
		"negative depth":      {"graphql {\n  max_depth = -3\n}\n", []string{`taskerd.hcl:2:15: Invalid max_depth`, `not -3`}},
		"zero complexity":     {"\ngraphql {\n  max_depth      = 4\n  max_complexity = 0\n}\n", []string{`taskerd.hcl:4:20: Invalid max_complexity: graphql.max_complexity must be at least 1, not 0.`}},
		"both bad":            {"graphql {\n  max_depth = 0\n  max_complexity = -1\n}\n", []string{`taskerd.hcl:2:15: Invalid max_depth`, `taskerd.hcl:3:20: Invalid max_complexity`}},
		"not a number":        {"graphql {\n  max_depth = \"deep\"\n}\n", []string{`taskerd.hcl:2:16: Unsuitable value type`, `a number is required`}},
		"not a whole number":  {"graphql {\n  max_complexity = 1.5\n}\n", []string{`taskerd.hcl:2:20: Unsuitable value type`, `whole number`}},
		"unknown graphql key": {"graphql {\n  introspection = false\n}\n", []string{`taskerd.hcl:2:3: Unsupported argument`}},
		"duplicate graphql":   {"graphql {\n}\ngraphql {\n}\n", []string{`taskerd.hcl:3:1: Duplicate graphql block`, `taskerd.hcl:1,1`}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse("taskerd.hcl", []byte(tt.src))
			require.Error(t, err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}
