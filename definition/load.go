package definition

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/taskerd/taskerd/internal/hclnest"
)

// Parser reads workflow files. It remembers every source it has read so that
// diagnostics can be printed with their source snippets (WriteDiagnostics).
// A Parser is not safe for concurrent use.
type Parser struct {
	// MaxFileSize bounds a workflow file, in bytes; 0 means
	// DefaultMaxFileSize. A larger file is refused before it is read whole.
	MaxFileSize int64

	p       *hclparse.Parser
	sources map[string][]byte
	// scheduleBlocks are the schedule blocks of the sources read, decoded
	// by Load once every workflow is known; schedules is Load's answer.
	scheduleBlocks []*hcl.Block
	schedules      []*Schedule
}

// Schedules returns the valid schedules of the files the last Load read,
// sorted by name.
func (p *Parser) Schedules() []*Schedule { return p.schedules }

// DefaultMaxFileSize is the largest workflow file a Parser reads unless its
// MaxFileSize says otherwise: 4 MiB, some thousand times the size of a
// large workflow, and small enough that parsing it takes a bounded time and
// memory.
const DefaultMaxFileSize = 4 << 20

// FileTooLarge is the Extra of the diagnostic refusing a file larger than
// the Parser's MaxFileSize.
type FileTooLarge struct {
	// Size is the file's size, or -1 when it is not known (not a regular
	// file: only that it holds more than Limit bytes).
	Size, Limit int64
}

func (p *Parser) maxFileSize() int64 {
	if p.MaxFileSize > 0 {
		return p.MaxFileSize
	}
	return DefaultMaxFileSize
}

func tooLarge(filename string, size, limit int64) hcl.Diagnostics {
	what := fmt.Sprintf("%s is %s", filename, byteSize(size))
	if size < 0 {
		what = fmt.Sprintf("%s holds more than %s", filename, byteSize(limit))
	}
	start := hcl.Pos{Line: 1, Column: 1}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Workflow file too large",
		Detail:   fmt.Sprintf("%s; a workflow file may be at most %s.", what, byteSize(limit)),
		Subject:  &hcl.Range{Filename: filename, Start: start, End: start},
		Extra:    FileTooLarge{Size: size, Limit: limit},
	}}
}

// byteSize writes n bytes for people: 4194304 bytes (4.0 MiB).
func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d bytes (%.1f KiB)", n, float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// NewParser returns an empty Parser.
func NewParser() *Parser {
	return &Parser{p: hclparse.NewParser(), sources: map[string][]byte{}}
}

// Files returns the parsed files by name.
func (p *Parser) Files() map[string]*hcl.File { return p.p.Files() }

// ParseSource parses and validates the workflows of one HCL source; its
// schedule blocks are kept for Load, which checks them against every
// workflow it read. The
// workflows returned are only those without errors; diags holds every problem
// found. Duplicate identities are checked only within this source: use Load
// (or CheckDuplicates) for a set of files.
func (p *Parser) ParseSource(filename string, src []byte) ([]*Workflow, hcl.Diagnostics) {
	if limit := p.maxFileSize(); int64(len(src)) > limit {
		return nil, tooLarge(filename, int64(len(src)), limit)
	}
	p.sources[filename] = src
	if diags := CheckNesting(filename, src); diags.HasErrors() {
		return nil, diags
	}
	file, diags := p.p.ParseHCL(src, filename)
	if file == nil || diags.HasErrors() {
		// A syntax error leaves a partial body; decoding it would only add
		// confusing follow-on errors.
		return nil, diags
	}
	workflows, schedules, more := decodeFile(file)
	p.scheduleBlocks = append(p.scheduleBlocks, schedules...)
	diags = append(diags, more...)
	workflows, more = CheckDuplicates(workflows)
	return workflows, append(diags, more...)
}

// MaxNesting is how deeply a workflow file may nest brackets, strings,
// template sequences and the operators of one expression.
const MaxNesting = 100

// CheckNesting refuses a source that nests deeper than MaxNesting levels,
// with an error at the line where it does. ParseSource calls it before
// parsing: hclsyntax parses recursively, and a deep enough source (a few
// hundred kilobytes of parentheses) would exhaust the stack and kill the
// process. See internal/hclnest for what counts as a level.
func CheckNesting(filename string, src []byte) hcl.Diagnostics {
	return hclnest.Check(filename, src, MaxNesting)
}

// ParseFile reads and parses one file. A file larger than MaxFileSize is
// refused without reading it whole.
func (p *Parser) ParseFile(path string) ([]*Workflow, hcl.Diagnostics) {
	src, diags := p.readFile(path)
	if diags.HasErrors() {
		return nil, diags
	}
	return p.ParseSource(path, src)
}

func (p *Parser) readFile(path string) ([]byte, hcl.Diagnostics) {
	cannot := func(err error) ([]byte, hcl.Diagnostics) {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read workflow file",
			Detail:   err.Error(),
		}}
	}
	limit := p.maxFileSize()
	f, err := os.Open(path)
	if err != nil {
		return cannot(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return cannot(err)
	}
	size := int64(512) // a first guess where the size is not known
	if info.Mode().IsRegular() {
		if info.Size() > limit {
			return nil, tooLarge(path, info.Size(), limit)
		}
		size = info.Size()
	}
	// Read at most one byte past the limit: a file that grew since Stat,
	// or one that is not a regular file, is refused once it is past it.
	src := make([]byte, 0, size+1)
	r := io.LimitReader(f, limit+1)
	for {
		if len(src) == cap(src) {
			src = append(src, 0)[:len(src)]
		}
		n, err := r.Read(src[len(src):cap(src)])
		src = src[:len(src)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return cannot(err)
		}
	}
	if int64(len(src)) > limit {
		return nil, tooLarge(path, -1, limit)
	}
	return src, nil
}

// Load reads every path (a file, or a directory whose *.hcl files are read,
// not recursively) and returns the union of their workflows. The same
// namespace/name@version defined twice is an error naming both places. It is
// an error when the paths hold no workflow at all. Only valid workflows are
// returned; diags holds every problem of every file. The files' valid
// schedules are then p.Schedules().
func (p *Parser) Load(paths ...string) ([]*Workflow, hcl.Diagnostics) {
	p.scheduleBlocks, p.schedules = nil, nil
	files, diags := expandPaths(paths)
	if diags.HasErrors() {
		return nil, diags
	}
	var all []*Workflow
	for _, f := range files {
		ws, more := p.ParseFile(f)
		diags = append(diags, more...)
		all = append(all, ws...)
	}
	all, more := CheckDuplicates(all)
	diags = append(diags, more...)
	p.schedules, more = decodeSchedules(p.scheduleBlocks, all)
	diags = append(diags, more...)
	if len(all) == 0 && !diags.HasErrors() {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "No workflows found",
			Detail:   fmt.Sprintf("None of %v defines a workflow block.", files),
		})
	}
	return all, diags
}

// Load is a convenience for NewParser().Load(paths...).
func Load(paths ...string) ([]*Workflow, *Parser, hcl.Diagnostics) {
	p := NewParser()
	ws, diags := p.Load(paths...)
	return ws, p, diags
}

// pathErrorExtra marks diagnostics about the paths themselves (missing, or a
// directory without *.hcl files) rather than about their contents.
type pathErrorExtra struct{}

// IsPathError reports whether diags hold a problem with the paths themselves
// rather than with their contents.
func IsPathError(diags hcl.Diagnostics) bool {
	for _, d := range diags {
		if _, ok := d.Extra.(pathErrorExtra); ok {
			return true
		}
	}
	return false
}

func expandPaths(paths []string) ([]string, hcl.Diagnostics) {
	var files []string
	var diags hcl.Diagnostics
	pathErr := func(summary, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Extra: pathErrorExtra{}})
	}
	if len(paths) == 0 {
		pathErr("No workflow paths", "Name at least one workflow file or directory.")
	}
	for _, path := range paths {
		info, err := os.Stat(path)
		if err != nil {
			pathErr("Cannot read workflow path", err.Error())
			continue
		}
		if !info.IsDir() {
			files = append(files, path)
			continue
		}
		matches, err := filepath.Glob(filepath.Join(path, "*.hcl"))
		if err != nil {
			pathErr("Cannot list workflow directory", err.Error())
			continue
		}
		if len(matches) == 0 {
			pathErr("No workflow files", fmt.Sprintf("Directory %s holds no *.hcl files.", path))
			continue
		}
		slices.Sort(matches)
		files = append(files, matches...)
	}
	return slices.Compact(files), diags
}

// CheckDuplicates drops every workflow whose identity was already defined and
// reports it, citing the first definition.
func CheckDuplicates(workflows []*Workflow) ([]*Workflow, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	seen := map[string]*Workflow{}
	kept := workflows[:0:0]
	for _, w := range workflows {
		if prev, ok := seen[w.ID()]; ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate workflow",
				Detail: fmt.Sprintf("Workflow %s is defined twice. Previous definition was at %s. Give one of them another name or version.",
					w.ID(), at(prev.DeclRange)),
				Subject: w.DeclRange.Ptr(),
			})
			continue
		}
		seen[w.ID()] = w
		kept = append(kept, w)
	}
	return kept, diags
}
