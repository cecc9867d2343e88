package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/plugin/host"
)

// writeHashes is `taskerd plugins hash --write FILE`: it sets the sha256
// of every plugin block of the daemon config FILE to the SHA-256 of the
// executable its path names (or, for a block with a command, a script
// plugin, to host.ScriptSHA256 of its script and lockfile), rewriting FILE in place with its comments and
// layout kept byte for byte (only the sha256 values change, or a sha256
// line is added after the path line), and prints each change. Nothing is written when
// nothing changes, or when a plugin's executable cannot be read (every such
// plugin is named). The write is atomic: a temporary file beside FILE, with
// FILE's mode, renamed over it.
func writeHashes(out io.Writer, path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return usageErrorf("%s", err)
	}
	// The native syntax tree, for the blocks' names and paths. The file is
	// not required to be a valid config: a plugin just added has no
	// sha256 yet, which is what this command is for.
	syn, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return usageErrorf("%s", (&config.Error{Diagnostics: diags}).Error())
	}
	type edit struct {
		start, end int // bytes of src replaced
		text       string
	}
	var edits []edit
	dir := filepath.Dir(path)
	var (
		report   []string // one line per plugin block, in file order
		problems []string
		blocks   int
		changed  int
	)
	for _, b := range syn.Body.(*hclsyntax.Body).Blocks {
		if b.Type != "plugin" || len(b.Labels) != 1 {
			continue
		}
		blocks++
		name := b.Labels[0]
		where := fmt.Sprintf("%s:%d", path, b.DefRange().Start.Line)
		attr, ok := b.Body.Attributes["path"]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: plugin %q has no path", where, name))
			continue
		}
		v, d := attr.Expr.Value(nil)
		if d.HasErrors() || v.IsNull() || !v.Type().Equals(cty.String) || !v.IsKnown() {
			problems = append(problems, fmt.Sprintf("%s: plugin %q: path is not a constant string", where, name))
			continue
		}
		exe := v.AsString()
		if !filepath.IsAbs(exe) {
			exe = filepath.Join(dir, exe)
		}
		// A block with a command is a script plugin: its checksum is the
		// script's and its lockfile's. A null command is no command, as
		// for the config.
		hash := host.FileSHA256
		if a, ok := b.Body.Attributes["command"]; ok {
			cv, d := a.Expr.Value(nil)
			switch {
			case d.HasErrors() || !cv.IsKnown() || (!cv.IsNull() && !cv.Type().Equals(cty.String)):
				problems = append(problems, fmt.Sprintf("%s: plugin %q: command is not a constant string", where, name))
				continue
			case !cv.IsNull():
				hash = host.ScriptSHA256
			}
		}
		sum, err := hash(exe)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				err = fmt.Errorf("%s does not exist (build it first)", exe)
			}
			problems = append(problems, fmt.Sprintf("%s: plugin %q: %v", where, name, err))
			continue
		}
		old := ""
		if a, ok := b.Body.Attributes["sha256"]; ok {
			if ov, d := a.Expr.Value(nil); !d.HasErrors() && ov.Type().Equals(cty.String) && ov.IsKnown() && !ov.IsNull() {
				old = strings.ToLower(ov.AsString())
			}
		}
		if old == sum {
			report = append(report, fmt.Sprintf("plugin %q: sha256 unchanged", name))
			continue
		}
		quoted := fmt.Sprintf("%q", sum)
		if a, ok := b.Body.Attributes["sha256"]; ok {
			r := a.Expr.Range()
			edits = append(edits, edit{r.Start.Byte, r.End.Byte, quoted})
		} else {
			// A new line after path's, indented as it is.
			pr := attr.SrcRange
			eol := strings.IndexByte(string(src[pr.End.Byte:]), '\n')
			if eol < 0 || pr.End.Byte+eol >= b.CloseBraceRange.Start.Byte {
				problems = append(problems, fmt.Sprintf("%s: plugin %q: a one-line block; put its path on a line of its own", where, name))
				continue
			}
			lineStart := strings.LastIndexByte(string(src[:pr.Start.Byte]), '\n') + 1
			indent := string(src[lineStart:pr.Start.Byte])
			at := pr.End.Byte + eol
			edits = append(edits, edit{at, at, "\n" + indent + "sha256 = " + quoted})
		}
		changed++
		if old == "" {
			report = append(report, fmt.Sprintf("plugin %q: sha256 set to %s", name, sum))
		} else {
			report = append(report, fmt.Sprintf("plugin %q: sha256 %s -> %s", name, old, sum))
		}
	}
	if len(problems) > 0 {
		return usageErrorf("%s left unchanged:\n  %s", path, strings.Join(problems, "\n  "))
	}
	if blocks == 0 {
		fmt.Fprintf(out, "no plugin blocks in %s\n", path)
		return nil
	}
	if changed > 0 {
		// The edits do not overlap and are in file order: apply them from
		// the last, so that the earlier offsets stay right.
		buf := slices.Clone(src)
		for i := len(edits) - 1; i >= 0; i-- {
			e := edits[i]
			buf = slices.Concat(buf[:e.start], []byte(e.text), buf[e.end:])
		}
		if _, err := config.Parse(path, buf); err != nil {
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				return &exitError{code: 1, err: err}
			}
			// Still not a valid config for other reasons: say so, but
			// the hashes are right.
			fmt.Fprintf(out, "note: %s has other problems:\n%s\n", path, err)
		}
		if err := writeFileAtomic(path, buf); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("rewriting %s: %w", path, err)}
		}
	}
	for _, line := range report {
		fmt.Fprintln(out, line)
	}
	if changed == 0 {
		fmt.Fprintf(out, "%s is up to date\n", path)
	} else {
		fmt.Fprintf(out, "wrote %s\n", path)
	}
	return nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, with path's mode, synced and renamed over it.
func writeFileAtomic(path string, data []byte) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, there is none
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
