package policy

import (
	"errors"
	"time"
)

// watch polls the policy directory. Polling (rather than inotify) sees
// changes made through symlink swaps, as Kubernetes does for ConfigMaps, and
// on filesystems without notifications; policy directories are small, so
// reading them once a second costs little.
func (e *Engine) watch() {
	defer close(e.done)
	t := time.NewTicker(e.opts.poll)
	defer t.Stop()
	var lastBad string // the revision (or read error) last reported, to report it once
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		src, err := readDir(e.dir)
		if err != nil {
			if msg := "read:" + err.Error(); msg != lastBad {
				lastBad = msg
				e.opts.log.Error("policy reload failed; keeping the previous policy",
					"dir", e.dir, "revision", e.Revision(), "err", err)
			}
			continue
		}
		rev := src.revision()
		if rev == e.Revision() {
			lastBad = ""
			continue
		}
		if rev == lastBad {
			continue
		}
		p, err := prepare(src)
		if err != nil {
			lastBad = rev
			args := []any{"dir", e.dir, "revision", e.Revision(), "rejected_revision", rev}
			var ce *CompileError
			if errors.As(err, &ce) {
				problems := make([]string, len(ce.Problems))
				for i, p := range ce.Problems {
					problems[i] = p.String()
				}
				args = append(args, "errors", problems)
			} else {
				args = append(args, "err", err)
			}
			e.opts.log.Error("policy reload failed; keeping the previous policy", args...)
			continue
		}
		old := e.current.Swap(p)
		lastBad = ""
		e.opts.log.Info("policy reloaded", "dir", e.dir, "revision", p.revision, "previous_revision", old.revision, "files", p.files)
		e.warnNoAllow(p)
	}
}
