package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// buildVersion is what the binary knows about itself, from the build
// information the Go toolchain embeds (runtime/debug.ReadBuildInfo): the
// module version ("devel" for a build from a source tree), and with a build
// inside a git checkout the commit, its time and whether the tree had
// uncommitted changes.
type buildVersion struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	CommitAt  string `json:"commit_time,omitempty"`
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func readBuildVersion() buildVersion {
	info, _ := debug.ReadBuildInfo()
	return versionOf(info)
}

// versionOf reads info (nil: a binary without build information).
func versionOf(info *debug.BuildInfo) buildVersion {
	v := buildVersion{Version: "devel", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info == nil {
		return v
	}
	if mv := info.Main.Version; mv != "" && mv != "(devel)" {
		v.Version = mv
	}
	if info.GoVersion != "" {
		v.GoVersion = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitAt = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one line `taskerd version` prints:
// "taskerd v1.2.3 (commit abc1234, modified) go1.26.8 linux/amd64".
func (v buildVersion) String() string {
	var in []string
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		in = append(in, "commit "+c)
		if v.CommitAt != "" {
			in = append(in, v.CommitAt)
		}
	}
	if v.Modified {
		in = append(in, "modified")
	}
	s := "taskerd " + v.Version
	if len(in) > 0 {
		s += " (" + strings.Join(in, ", ") + ")"
	}
	return s + " " + v.GoVersion + " " + v.Platform
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print taskerd's version, commit and Go version",
		Long: `Print the version of this binary: the module version (devel for a build
from a source tree), the git commit it was built from with its time and
whether the tree had uncommitted changes (when built inside a git checkout),
the Go version and the platform. taskerd --version prints the same line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := readBuildVersion()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			fmt.Fprintln(cmd.OutOrStdout(), v)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON document instead of a line")
	return cmd
}
