package logsink_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/internal/logsink"
)

func TestConcurrentWritesAreAllKept(t *testing.T) {
	var b logsink.Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, err := b.Write([]byte("line\n"))
				require.NoError(t, err)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 800, strings.Count(b.String(), "line\n"))
}
