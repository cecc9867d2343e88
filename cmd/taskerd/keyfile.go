package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/taskerd/taskerd/api"
)

// bootstrapKeyFileName is the bootstrap admin key's file with no
// --bootstrap-key-file.
const bootstrapKeyFileName = "taskerd-admin.key"

// defaultKeyFile is where serve writes a new bootstrap admin key with no
// --bootstrap-key-file: beside the database for a SQLite file, in the
// current directory otherwise (PostgreSQL, sqlite::memory:).
func defaultKeyFile(dsn string) string {
	if rest, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		path, _, _ := strings.Cut(rest, "?")
		if path != "" && path != ":memory:" {
			return filepath.Join(filepath.Dir(path), bootstrapKeyFileName)
		}
	}
	return bootstrapKeyFileName
}

// keyFile is the api.KeySaver of serve: the new bootstrap key is written
// (mode 0600) to a temporary file beside path before its hash is stored,
// and renamed to path only if this node's key is the one stored. So a key
// that cannot be written is never stored (serve exits 1 and the next start
// tries again), several nodes starting at once leave the file of the one
// that won, and a reader never sees a half-written file. A file already at
// path (the key of an earlier database) is replaced.
type keyFile struct {
	path     string
	tmp      string
	replaced bool // Commit replaced an existing file
}

var _ api.KeySaver = (*keyFile)(nil)

// Stage implements api.KeySaver.
func (k *keyFile) Stage(key string) (err error) {
	f, err := os.CreateTemp(filepath.Dir(k.path), "."+filepath.Base(k.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing the bootstrap admin key to %s: %w", k.path, unwrapPath(err))
	}
	k.tmp = f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			k.Abort()
			err = fmt.Errorf("writing the bootstrap admin key to %s: %w", k.path, unwrapPath(err))
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// Commit implements api.KeySaver.
func (k *keyFile) Commit() error {
	if _, err := os.Lstat(k.path); err == nil {
		k.replaced = true
	}
	if err := os.Rename(k.tmp, k.path); err != nil {
		return fmt.Errorf("the bootstrap admin key was created, but moving its file %s to %s failed (%w): move it by hand, it holds the only copy of the key",
			k.tmp, k.path, unwrapPath(err))
	}
	k.tmp = ""
	return nil
}

// Abort implements api.KeySaver.
func (k *keyFile) Abort() {
	if k.tmp != "" {
		_ = os.Remove(k.tmp)
		k.tmp = ""
	}
}

// unwrapPath drops the *PathError's own path and operation, which the
// message names already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
