package backendtest

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func testSettings(t *testing.T, newStore func(t *testing.T) backends.Store) {
	t.Run("PutIfAbsentAndRead", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		_, err := b.store.Setting(b.ctx, "k")
		require.ErrorIs(t, err, backends.ErrNotFound)

		stored, created, err := b.store.PutSettingIfAbsent(b.ctx, "k", "first", base)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, "first", stored)
		stored, created, err = b.store.PutSettingIfAbsent(b.ctx, "k", "second", base)
		require.NoError(t, err)
		require.False(t, created, "the name is taken")
		require.Equal(t, "first", stored, "the first value stays")
		v, err := b.store.Setting(b.ctx, "k")
		require.NoError(t, err)
		require.Equal(t, "first", v)
	})

	t.Run("ConcurrentPutsAgree", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		const n = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			values  = map[string]bool{}
			winners int
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stored, created, err := b.store.PutSettingIfAbsent(b.ctx, "boot", string(rune('a'+i)), base)
				require.NoError(t, err)
				mu.Lock()
				defer mu.Unlock()
				values[stored] = true
				if created {
					winners++
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 1, winners)
		require.Len(t, values, 1, "every caller sees the one stored value")
	})
}
