package policy

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefaultPolicyRegoUnitTests(t *testing.T) {
	t.Parallel()
	results, err := TestDefault(context.Background())
	require.NoError(t, err)
	require.NotEmpty(t, results)
	for _, r := range results {
		require.True(t, r.Pass, "%s (%s) failed: %s", r.Name, r.Location, r.Message)
	}
}
