package definition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	// Zones are compiled in: an edge device without /usr/share/zoneinfo
	// must load a schedule with timezone = "Europe/Berlin" as a server does.
	// (OPA's topdown imports it too, so today it costs taskerd nothing; this
	// import keeps the zones if that ever changes.)
	_ "time/tzdata"

	"github.com/hashicorp/hcl/v2"
	"github.com/robfig/cron/v3"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Overlap says what a firing does while an earlier task of its schedule is
// unfinished (not complete, cancelled or resolved_manually).
type Overlap string

const (
	// OverlapAllow creates the task anyway.
	OverlapAllow Overlap = "allow"
	// OverlapSkip creates nothing; the firing is recorded as skipped.
	OverlapSkip Overlap = "skip"
	// OverlapCancelPrevious cancels the unfinished tasks, then creates.
	OverlapCancelPrevious Overlap = "cancel_previous"
)

// CatchUp says what happens to the firings that fell due while no node ran
// the scheduler (or could not reach the database).
type CatchUp string

const (
	// CatchUpNone drops them: only firings from now on run.
	CatchUpNone CatchUp = "none"
	// CatchUpOne runs the most recent of them once.
	CatchUpOne CatchUp = "one"
	// CatchUpAll runs every one of them, oldest first, up to MaxCatchUp.
	CatchUpAll CatchUp = "all"
)

// MaxScheduleName bounds a schedule's name, in bytes, so that its tasks'
// tag (schedule:NAME) and idempotency key (schedule/NAME/manual/INSTANT)
// stay within the engine's limits.
const MaxScheduleName = 100

// Schedule defaults.
const (
	DefaultTimezone = "UTC"
	DefaultOverlap  = OverlapAllow
	DefaultCatchUp  = CatchUpOne
)

// Schedule is a `schedule "NAME" { ... }` block: a workflow started on a
// cron rule.
type Schedule struct {
	Name string
	// Workflow names the workflow; without a version the highest loaded at
	// each firing runs.
	Workflow Ref
	Cron     string
	// Timezone is the zone the cron rule is read in (Location's name).
	Timezone string
	Location *time.Location
	// Context is each task's context, a JSON object ({} when not given).
	Context json.RawMessage
	Overlap Overlap
	CatchUp CatchUp
	// DeclRange is where the schedule block starts.
	DeclRange hcl.Range

	spec cron.Schedule
	// onceAWallTime: the rule names its hours (not every hour), so a wall
	// time repeated on the night clocks go back fires once, at its first
	// occurrence.
	onceAWallTime bool
}

// Namespace is the namespace of the schedule's workflow: the policy
// authorizes schedule actions there.
func (s *Schedule) Namespace() string { return s.Workflow.Namespace }

// Next is the first firing instant strictly after t, in UTC, or the zero
// time when the rule never fires again (robfig/cron gives up after five
// years, e.g. for "0 0 30 2 *").
func (s *Schedule) Next(t time.Time) time.Time {
	n := s.spec.Next(t.In(s.Location))
	for s.onceAWallTime && !n.IsZero() && repeatedWallTime(n) {
		n = s.spec.Next(n)
	}
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// repeatedWallTime reports whether the wall time of t (in its location)
// already happened once, earlier the same night, before the clocks went
// back: t is in the second pass of a repeated hour. robfig/cron fires both
// passes; a rule for "02:30" should run once that night, as in Vixie cron.
func repeatedWallTime(t time.Time) bool {
	_, off := t.Zone()
	// The offset a few hours before: a shift back is at most a few hours.
	_, before := t.Add(-3 * time.Hour).Zone()
	if before <= off {
		return false
	}
	twin := t.Add(-time.Duration(before-off) * time.Second)
	if _, o := twin.Zone(); o != before {
		return false
	}
	h1, m1, s1 := t.Clock()
	h2, m2, s2 := twin.Clock()
	return h1 == h2 && m1 == m2 && s1 == s2 && t.YearDay() == twin.YearDay()
}

// cronParser reads standard five-field rules and descriptors (@hourly,
// @daily, @every 15m, ...).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

var scheduleSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "workflow", Required: true},
		{Name: "version"},
		{Name: "cron", Required: true},
		{Name: "timezone"},
		{Name: "context"},
		{Name: "overlap"},
		{Name: "catch_up"},
	},
}

// decodeSchedules reads schedule blocks once every file's workflows are
// known, since a schedule is checked against the workflow it names. Only
// schedules without errors are returned.
func decodeSchedules(blocks []*hcl.Block, workflows []*Workflow) ([]*Schedule, hcl.Diagnostics) {
	cat := NewCatalog(workflows)
	var (
		diags hcl.Diagnostics
		out   []*Schedule
	)
	seen := map[string]*Schedule{}
	for _, b := range blocks {
		s, more := decodeSchedule(b, cat)
		diags = append(diags, more...)
		if s == nil {
			continue
		}
		if prev, ok := seen[s.Name]; ok {
			diags = append(diags, errAt(b.LabelRanges[0], "Duplicate schedule",
				"Schedule %q is defined twice. Previous definition was at %s. Schedule names are unique across all workflow files.",
				s.Name, at(prev.DeclRange)))
			continue
		}
		seen[s.Name] = s
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Schedule) int { return strings.Compare(a.Name, b.Name) })
	return out, diags
}

func decodeSchedule(block *hcl.Block, cat *Catalog) (*Schedule, hcl.Diagnostics) {
	s := &Schedule{
		Name:      block.Labels[0],
		Timezone:  DefaultTimezone,
		Location:  time.UTC,
		Context:   json.RawMessage(`{}`),
		Overlap:   DefaultOverlap,
		CatchUp:   DefaultCatchUp,
		DeclRange: block.DefRange,
	}
	var diags hcl.Diagnostics
	if !validName(s.Name) {
		diags = append(diags, errAt(block.LabelRanges[0], "Invalid schedule name",
			"%q is not a valid schedule name: use letters, digits, _ and -, starting with a letter or _.", s.Name))
	} else if len(s.Name) > MaxScheduleName {
		diags = append(diags, errAt(block.LabelRanges[0], "Invalid schedule name",
			"A schedule name may be at most %d bytes long, not %d.", MaxScheduleName, len(s.Name)))
	}
	content, more := block.Body.Content(scheduleSchema)
	diags = append(diags, more...)
	if more.HasErrors() {
		return nil, diags
	}

	wfAttr := content.Attributes["workflow"]
	wfOK := false
	if ref, more := evalString(wfAttr); more.HasErrors() {
		diags = append(diags, more...)
	} else if r, err := ParseRef(ref); err != nil || strings.Contains(ref, "@") {
		detail := fmt.Sprintf("workflow = %q: write \"namespace/name\" (pin a version with the version attribute)", ref)
		if err != nil {
			detail = err.Error()
		}
		diags = append(diags, errAt(wfAttr.Expr.Range(), "Invalid workflow reference", "%s.", detail))
	} else {
		s.Workflow, wfOK = r, true
	}
	if attr, ok := content.Attributes["version"]; ok {
		v, more := evalString(attr)
		diags = append(diags, more...)
		if !more.HasErrors() {
			if ver, err := ParseVersion(v); err != nil {
				diags = append(diags, errAt(attr.Expr.Range(), "Invalid version", "%s.", err))
				wfOK = false
			} else {
				s.Workflow.Version = &ver
			}
		} else {
			wfOK = false
		}
	}
	var wf *Workflow
	if wfOK {
		w, err := cat.Lookup(s.Workflow)
		if err != nil {
			diags = append(diags, errAt(wfAttr.Expr.Range(), "Unknown workflow",
				"Schedule %q names %s, which is not loaded: %s.", s.Name, s.Workflow, err))
		} else {
			wf = w
		}
	}

	cronAttr := content.Attributes["cron"]
	if expr, more := evalString(cronAttr); more.HasErrors() {
		diags = append(diags, more...)
	} else {
		s.Cron = strings.TrimSpace(expr)
		if strings.HasPrefix(s.Cron, "TZ=") || strings.HasPrefix(s.Cron, "CRON_TZ=") {
			diags = append(diags, errAt(cronAttr.Expr.Range(), "Invalid cron rule",
				"cron = %q: give the zone in the timezone attribute, not in the rule.", expr))
		} else if spec, err := cronParser.Parse(s.Cron); err != nil {
			diags = append(diags, errAt(cronAttr.Expr.Range(), "Invalid cron rule",
				"cron = %q: %s. Write five fields (minute hour day-of-month month day-of-week), e.g. \"*/5 * * * *\", or a descriptor such as \"@hourly\".", expr, err))
		} else {
			s.spec = spec
			// A rule for every hour keeps firing once per real hour.
			const allHours = 1<<24 - 1
			if ss, ok := spec.(*cron.SpecSchedule); ok && ss.Hour&allHours != allHours {
				s.onceAWallTime = true
			}
		}
	}
	if attr, ok := content.Attributes["timezone"]; ok {
		tz, more := evalString(attr)
		diags = append(diags, more...)
		if !more.HasErrors() {
			// LoadLocation("") and "Local" would mean the host's zone, which
			// differs between the nodes of a cluster.
			loc, err := time.LoadLocation(tz)
			if err != nil || tz == "" || tz == "Local" {
				diags = append(diags, errAt(attr.Expr.Range(), "Unknown timezone",
					"timezone = %q is not an IANA time zone name such as \"UTC\" or \"Europe/Berlin\".", tz))
			} else {
				s.Timezone, s.Location = tz, loc
			}
		}
	}
	if attr, ok := content.Attributes["overlap"]; ok {
		v, more := evalString(attr)
		diags = append(diags, more...)
		switch o := Overlap(v); {
		case more.HasErrors():
		case o == OverlapAllow || o == OverlapSkip || o == OverlapCancelPrevious:
			s.Overlap = o
		default:
			diags = append(diags, errAt(attr.Expr.Range(), "Invalid overlap",
				"overlap = %q: want \"allow\", \"skip\" or \"cancel_previous\".", v))
		}
	}
	if attr, ok := content.Attributes["catch_up"]; ok {
		v, more := evalString(attr)
		diags = append(diags, more...)
		switch c := CatchUp(v); {
		case more.HasErrors():
		case c == CatchUpNone || c == CatchUpOne || c == CatchUpAll:
			s.CatchUp = c
		default:
			diags = append(diags, errAt(attr.Expr.Range(), "Invalid catch_up",
				"catch_up = %q: want \"none\", \"one\" or \"all\".", v))
		}
	}
	if attr, ok := content.Attributes["context"]; ok {
		raw, more := evalJSON(attr)
		diags = append(diags, more...)
		if !more.HasErrors() {
			diags = append(diags, s.checkContext(attr, raw, wf)...)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return s, diags
}

// checkContext keeps raw as the schedule's context if it is an object that
// wf's context_schema accepts, so that a bad context is caught when the file
// loads, not at the first firing.
func (s *Schedule) checkContext(attr *hcl.Attribute, raw json.RawMessage, wf *Workflow) hcl.Diagnostics {
	if raw == nil || !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		return hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid context",
			"context must be an object, e.g. context = { region = \"eu\" }.")}
	}
	s.Context = raw
	if wf == nil {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return hcl.Diagnostics{errAt(attr.Expr.Range(), "Invalid context", "%s.", err)}
	}
	if err := wf.ValidateContext(v); err != nil {
		msg := err.Error()
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			var parts []string
			for _, v := range Violations(ve) {
				ptr := v.Pointer
				if ptr == "" {
					ptr = "(root)"
				}
				parts = append(parts, ptr+": "+v.Message)
			}
			msg = strings.Join(parts, "; ")
		}
		return hcl.Diagnostics{errAt(attr.Expr.Range(), "Context does not match the workflow",
			"The context of schedule %q does not match the context_schema of %s: %s.", s.Name, wf.ID(), msg)}
	}
	return nil
}
