package backendtest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// hashOf is a fake key hash: the stores only compare them.
func hashOf(n int) string { return fmt.Sprintf("%064x", n) }

func testAPIKeys(t *testing.T, newStore func(t *testing.T) backends.Store) {
	newKey := func(id string, n int) *backends.NewAPIKeyParams {
		return &backends.NewAPIKeyParams{
			ID: id, Subject: "ci-bot", Roles: []string{"operator"}, Namespaces: []string{"shop", "billing"},
			Hash: hashOf(n), Actor: "cli:alice", Now: base,
		}
	}

	t.Run("CreateLookupList", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		keys, err := b.store.ListAPIKeys(b.ctx)
		require.NoError(t, err)
		require.Empty(t, keys)

		expires := at(720 * time.Hour)
		p := newKey("k1", 1)
		p.ExpiresAt = &expires
		k, err := b.store.CreateAPIKey(b.ctx, p)
		require.NoError(t, err)
		want := &backends.APIKey{ID: "k1", Subject: "ci-bot", Roles: []string{"operator"}, Namespaces: []string{"shop", "billing"},
			Hash: hashOf(1), CreatedAt: base, CreatedBy: "cli:alice", ExpiresAt: &expires}
		require.Equal(t, want, k)

		got, err := b.store.APIKeyByHash(b.ctx, hashOf(1))
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.NoError(t, got.Usable(at(719*time.Hour)))
		require.ErrorContains(t, got.Usable(expires), "API key k1 expired at", "expired at ExpiresAt itself")

		// A key without namespaces, roles of several, no expiry.
		p2 := newKey("k2", 2)
		p2.Namespaces, p2.Roles, p2.Now = nil, []string{"viewer", "metrics"}, at(time.Second)
		_, err = b.store.CreateAPIKey(b.ctx, p2)
		require.NoError(t, err)
		got, err = b.store.APIKeyByHash(b.ctx, hashOf(2))
		require.NoError(t, err)
		require.Equal(t, []string{}, got.Namespaces)
		require.Equal(t, []string{"viewer", "metrics"}, got.Roles)
		require.Nil(t, got.ExpiresAt)
		require.NoError(t, got.Usable(at(1000*time.Hour)))

		keys, err = b.store.ListAPIKeys(b.ctx)
		require.NoError(t, err)
		require.Len(t, keys, 2)
		require.Equal(t, "k1", keys[0].ID, "oldest first")
		require.Equal(t, "k2", keys[1].ID)

		_, err = b.store.APIKeyByHash(b.ctx, hashOf(3))
		require.ErrorIs(t, err, backends.ErrNotFound)
	})

	t.Run("DuplicateIDOrHash", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		_, err := b.store.CreateAPIKey(b.ctx, newKey("k1", 1))
		require.NoError(t, err)
		_, err = b.store.CreateAPIKey(b.ctx, newKey("k1", 2))
		require.ErrorIs(t, err, backends.ErrDuplicate, "same id")
		_, err = b.store.CreateAPIKey(b.ctx, newKey("k2", 1))
		require.ErrorIs(t, err, backends.ErrDuplicate, "same hash")
		keys, err := b.store.ListAPIKeys(b.ctx)
		require.NoError(t, err)
		require.Len(t, keys, 1, "nothing stored by the refused creates")
		events, err := b.store.ListAPIKeyEvents(b.ctx, "")
		require.NoError(t, err)
		require.Len(t, events, 1, "no audit row for a refused create")
	})

	t.Run("RevokeAndAudit", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		_, err := b.store.CreateAPIKey(b.ctx, newKey("k1", 1))
		require.NoError(t, err)
		_, err = b.store.CreateAPIKey(b.ctx, newKey("k2", 2))
		require.NoError(t, err)

		k, revoked, err := b.store.RevokeAPIKey(b.ctx, "k1", "cli:bob", at(time.Minute))
		require.NoError(t, err)
		require.True(t, revoked)
		require.Equal(t, at(time.Minute), *k.RevokedAt)
		require.Equal(t, "cli:bob", k.RevokedBy)
		got, err := b.store.APIKeyByHash(b.ctx, hashOf(1))
		require.NoError(t, err, "a revoked key is still found, for the caller to refuse")
		require.ErrorContains(t, got.Usable(at(time.Minute)), "API key k1 was revoked at")

		// Again: nothing changes, the first revocation stays.
		k, revoked, err = b.store.RevokeAPIKey(b.ctx, "k1", "cli:carol", at(time.Hour))
		require.NoError(t, err)
		require.False(t, revoked)
		require.Equal(t, at(time.Minute), *k.RevokedAt)
		require.Equal(t, "cli:bob", k.RevokedBy)

		_, _, err = b.store.RevokeAPIKey(b.ctx, "nope", "cli:bob", at(time.Hour))
		require.ErrorIs(t, err, backends.ErrNotFound)

		// The other key is untouched.
		got, err = b.store.APIKeyByHash(b.ctx, hashOf(2))
		require.NoError(t, err)
		require.Nil(t, got.RevokedAt)

		events, err := b.store.ListAPIKeyEvents(b.ctx, "k1")
		require.NoError(t, err)
		require.Len(t, events, 2)
		require.Equal(t, "k1", events[0].KeyID)
		require.Equal(t, backends.APIKeyCreated, events[0].Action)
		require.Equal(t, "cli:alice", events[0].Actor)
		require.Equal(t, base, events[0].At)
		require.Equal(t, `subject="ci-bot" roles=["operator"] namespaces=["shop" "billing"]`, events[0].Detail)
		require.Equal(t, backends.APIKeyRevoked, events[1].Action)
		require.Equal(t, "cli:bob", events[1].Actor)
		require.Equal(t, at(time.Minute), events[1].At)
		require.Greater(t, events[1].ID, events[0].ID)

		all, err := b.store.ListAPIKeyEvents(b.ctx, "")
		require.NoError(t, err)
		require.Len(t, all, 3)
		for _, e := range all {
			require.NotContains(t, e.Detail, hashOf(1), "the audit holds no hash")
			require.NotContains(t, e.Detail, hashOf(2))
		}
		none, err := b.store.ListAPIKeyEvents(b.ctx, "nope")
		require.NoError(t, err)
		require.Empty(t, none)
	})

	t.Run("ConcurrentRevokesWriteOneAuditRow", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newStore)
		_, err := b.store.CreateAPIKey(b.ctx, newKey("k1", 1))
		require.NoError(t, err)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners int
		)
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, revoked, err := b.store.RevokeAPIKey(b.ctx, "k1", fmt.Sprintf("cli:%d", i), at(time.Minute))
				require.NoError(t, err)
				if revoked {
					mu.Lock()
					winners++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 1, winners)
		events, err := b.store.ListAPIKeyEvents(b.ctx, "k1")
		require.NoError(t, err)
		require.Len(t, events, 2, "created, and one revoked")
	})
}
