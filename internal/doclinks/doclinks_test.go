package doclinks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRepositoryLinks is the check itself: every relative link of every
// markdown file of the repository resolves.
func TestRepositoryLinks(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"), "the repository root is two levels up")
	require.FileExists(t, filepath.Join(root, "README.md"))
	require.DirExists(t, filepath.Join(root, "docs"))

	problems, err := Check(root)
	require.NoError(t, err)
	var lines []string
	for _, p := range problems {
		lines = append(lines, p.String())
	}
	require.Empty(t, lines, "broken links:\n%s", strings.Join(lines, "\n"))
}

// TestCheckFindsBrokenLinks shows the check fails on each kind of broken
// link, and only on those.
func TestCheckFindsBrokenLinks(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(root, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
	write("README.md", strings.Join([]string{
		"# Front page", // 1
		"See [the guide](docs/guide.md) and [a section](docs/guide.md#the-plugin-name-block).", // 2: both fine
		"[gone](docs/missing.md) and [bad anchor](docs/guide.md#no-such-heading)",              // 3: two problems
		"[here](#front-page) [not here](#nowhere)",                                             // 4: one problem
		"[web](https://example.com/x.md) [mail](mailto:a@example.com) [dir](docs/)",            // 5: fine
		"```sh",                    // 6
		"[in a fence](nothing.md)", // 7: ignored
		"```",                      // 8
		"`[in a span](nothing.md)` [escape](../outside.md)",                   // 9: one problem
		"[ref]: docs/nothing.md",                                              // 10: one problem
		"![img](docs/pic.png)",                                                // 11: one problem
		"[code](docs/guide.md#databases---db) [twice](docs/guide.md#setup-1)", // 12: fine
	}, "\n"))
	write("docs/guide.md", strings.Join([]string{
		"# Guide",
		"## The `plugin \"NAME\"` block",
		"## Databases (`--db`)",
		"## Setup",
		"## Setup",
		"```hcl",
		"# not a heading",
		"```",
		"[back](../README.md#front-page) [up](../README.md#comment)",
	}, "\n"))

	problems, err := Check(root)
	require.NoError(t, err)
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	require.Equal(t, []string{
		"README.md:3: docs/missing.md: no such file or directory: docs/missing.md",
		"README.md:3: docs/guide.md#no-such-heading: no heading with anchor #no-such-heading in docs/guide.md",
		"README.md:4: #nowhere: no heading with anchor #nowhere in README.md",
		"README.md:9: ../outside.md: points outside the repository",
		"README.md:10: docs/nothing.md: no such file or directory: docs/nothing.md",
		"README.md:11: docs/pic.png: no such file or directory: docs/pic.png",
		"docs/guide.md:9: ../README.md#comment: no heading with anchor #comment in README.md",
	}, got)
}

func TestSlug(t *testing.T) {
	t.Parallel()
	for heading, want := range map[string]string{
		"Quick start":                       "quick-start",
		"3. Step readiness":                 "3-step-readiness",
		"`taskerd task`":                    "taskerd-task",
		"Databases (`--db`)":                "databases---db",
		"`plugin \"NAME\"` blocks":          "plugin-name-blocks",
		"What taskerd guarantees":           "what-taskerd-guarantees",
		"Storage: PostgreSQL":               "storage-postgresql",
		"The [chain](x.md) *of* plugins":    "the-chain-of-plugins",
		"step_handler and Ünïcode":          "step_handler-and-ünïcode",
		"A, b & c?":                         "a-b--c",
		"Authenticators: RS256 JWT vs bare": "authenticators-rs256-jwt-vs-bare",
	} {
		require.Equal(t, want, Slug(heading), "heading %q", heading)
	}
}
