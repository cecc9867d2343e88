package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Script plugins (Spec.Command set) are run by an interpreter, node for
// the TypeScript SDK: the process is Command, with the entry script
// (Spec.Path) as its first argument. The interpreter is not what the
// configuration trusts, the script and the dependencies it was installed
// with are, so their checksum is ScriptSHA256's rather than the
// executable's (docs/plugins.md, "Script plugins").

// The files of a script plugin's npm project, found from its script.
const (
	packageJSON    = "package.json"
	packageLock    = "package-lock.json"
	npmShrinkwrap  = "npm-shrinkwrap.json"
	scriptManifest = "taskerd script plugin v1\n"
)

// ScriptFiles returns the two files a script plugin's checksum covers: its
// script, with symbolic links resolved (node runs the file a link points
// to, and looks for its modules from there), and its lockfile, the
// package-lock.json of the nearest directory, from the script's own
// upwards, that holds a package.json (that directory is the script's npm
// project). It is an error when no directory up to the root holds a
// package.json, when the nearest one has no package-lock.json beside it,
// or when it has an npm-shrinkwrap.json too: npm would install from that
// one, which the checksum does not cover.
func ScriptFiles(path string) (script, lockfile string, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", err
	}
	script, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", "", err
	}
	info, err := os.Stat(script)
	if err != nil {
		return "", "", err
	}
	if !info.Mode().IsRegular() {
		return "", "", fmt.Errorf("script %s is not a regular file", script)
	}
	for dir := filepath.Dir(script); ; {
		found, err := isFile(filepath.Join(dir, packageJSON))
		if err != nil {
			return "", "", err
		}
		if found {
			lockfile = filepath.Join(dir, packageLock)
			if ok, err := isFile(lockfile); err != nil {
				return "", "", err
			} else if !ok {
				return "", "", fmt.Errorf("script %s: no %s beside %s: the checksum of a script plugin covers its lockfile (run npm install there, and keep the lockfile with the script)",
					script, packageLock, filepath.Join(dir, packageJSON))
			}
			if ok, err := isFile(filepath.Join(dir, npmShrinkwrap)); err != nil {
				return "", "", err
			} else if ok {
				return "", "", fmt.Errorf("script %s: %s holds an %s, which npm installs from instead of %s, and which the checksum does not cover: remove one of them",
					script, dir, npmShrinkwrap, packageLock)
			}
			return script, lockfile, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", "", fmt.Errorf("script %s: no %s in its directory or any above it: a script plugin must be part of an npm project, whose %s pins its dependencies and is covered by the checksum",
				script, packageJSON, packageLock)
		}
		dir = parent
	}
}

// isFile reports whether path exists and is a regular file (after
// symbolic links); an error other than its absence is returned.
func isFile(path string) (bool, error) {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	}
	return info.Mode().IsRegular(), nil
}

// ScriptSHA256 returns the hex checksum of the script plugin whose entry
// script is at path: the SHA-256 of a manifest naming the script and its
// lockfile (ScriptFiles) with each one's own SHA-256. The manifest is
// three lines, each ending in "\n":
//
//	taskerd script plugin v1
//	script HEX NAME
//	lockfile HEX package-lock.json
//
// where HEX is the lower-case hex SHA-256 of the file's bytes and NAME is
// the script's path relative to the directory of its package.json, with /
// between its parts (say dist/main.js). So moving the whole project
// elsewhere keeps its checksum, while changing a byte of either file, or
// running another script of the project, changes it.
func ScriptSHA256(path string) (string, error) {
	sum, _, err := scriptSHA256(path)
	return sum, err
}

// scriptSHA256 is ScriptSHA256, and the lockfile it covers.
func scriptSHA256(path string) (sum, lockfile string, err error) {
	script, lockfile, err := ScriptFiles(path)
	if err != nil {
		return "", "", err
	}
	name, err := filepath.Rel(filepath.Dir(lockfile), script)
	if err != nil {
		return "", "", err
	}
	name = filepath.ToSlash(name)
	if strings.ContainsAny(name, "\n\r") {
		return "", "", fmt.Errorf("script %q: a line break in its name", script)
	}
	scriptSum, err := FileSHA256(script)
	if err != nil {
		return "", "", err
	}
	lockSum, err := FileSHA256(lockfile)
	if err != nil {
		return "", "", err
	}
	manifest := scriptManifest +
		"script " + scriptSum + " " + name + "\n" +
		"lockfile " + lockSum + " " + packageLock + "\n"
	digest := sha256.Sum256([]byte(manifest))
	return hex.EncodeToString(digest[:]), lockfile, nil
}

// interpreter resolves a script plugin's Command to the absolute path of
// the program to run: a name without a path separator is looked up in the
// daemon's PATH (exec.LookPath, which refuses a match in a relative PATH
// entry such as "."), a path is used as it is.
func (s *Spec) interpreter() (string, error) {
	exe, err := exec.LookPath(s.Command)
	if err != nil {
		return "", fmt.Errorf("plugin %q: cannot start its script %s: interpreter %q: %w", s.Name, s.Path, s.Command, err)
	}
	if abs, err := filepath.Abs(exe); err == nil {
		exe = abs
	}
	return exe, nil
}

// verifyScript checks a script plugin's checksum before its process is
// started: a *ChecksumError when it is not the configured one.
func (s *Spec) verifyScript() error {
	actual, lockfile, err := scriptSHA256(s.Path)
	if err != nil {
		return fmt.Errorf("plugin %q: refusing to start script %s: cannot compute its checksum: %w", s.Name, s.Path, err)
	}
	if actual != s.SHA256 {
		return &ChecksumError{Plugin: s.Name, Path: s.Path, Lockfile: lockfile, Expected: s.SHA256, Actual: actual}
	}
	return nil
}
