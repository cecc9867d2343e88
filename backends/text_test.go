package backends_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func TestCheckText(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "plain", "ünïcödé ✓", "tab\tnewline\n", "😀"} {
		require.NoError(t, backends.CheckText(ok), "%q", ok)
	}
	for _, bad := range []string{"a\x00b", "\x00", "bad\xffbyte", "\xc3", "\xed\xa0\x80" /* UTF-8 of a surrogate */} {
		err := backends.CheckText(bad)
		require.ErrorIs(t, err, backends.ErrUnstorable, "%q", bad)
	}
}

// JSONCorpus are documents on both sides of CheckJSON's line; the
// PostgreSQL backend's tests check that jsonb draws the same line.
var jsonCorpus = backends.CheckJSONCorpus

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	for _, ok := range jsonCorpus.Storable {
		require.NoError(t, backends.CheckJSON([]byte(ok)), "%s", ok)
	}
	for _, bad := range jsonCorpus.Unstorable {
		require.ErrorIs(t, backends.CheckJSON([]byte(bad)), backends.ErrUnstorable, "%q", bad)
	}
	for _, bad := range []string{"", "{", `{"a":}`, "nul\x00", `{"a":"` + "\x00" + `"}`, `{"a":"` + "\xff" + `"}`} {
		require.ErrorIs(t, backends.CheckJSON([]byte(bad)), backends.ErrUnstorable, "%q", bad)
	}
}

func TestSanitizeText(t *testing.T) {
	t.Parallel()
	require.Equal(t, "fine ✓", backends.SanitizeText("fine ✓"))
	require.Equal(t, "a\uFFFDb\uFFFDc", backends.SanitizeText("a\x00b\xffc"))
	require.NoError(t, backends.CheckText(backends.SanitizeText("\xc3\x00\xed\xa0\x80")))
}
