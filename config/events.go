package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"

	"github.com/taskerd/taskerd/backends"
)

// This file reads the blocks that send the event log outside taskerd:
// `webhook "NAME" { ... }` and `events { nats { ... } }` (internal/delivery
// does the sending).

// Webhook is one `webhook "NAME" { ... }` block.
type Webhook struct {
	Name string
	URL  string
	// Events are event-type patterns: exact names, "prefix.*" or "*"
	// (none: every event).
	Events []string
	// Namespaces limit the events to tasks of these namespaces (none:
	// every namespace).
	Namespaces []string
	// SecretFile holds the HMAC key the POSTs are signed with, resolved
	// against the config file's directory. Never log its content.
	SecretFile string
	// MaxAttempts, Timeout, BackoffBase, BackoffMax: 0 for the defaults.
	MaxAttempts             int
	Timeout                 time.Duration
	BackoffBase, BackoffMax time.Duration
	// FromBeginning (from = "beginning"): a new webhook delivers the
	// events already in the log; by default it starts at the log's end.
	FromBeginning bool
	DeclRange     hcl.Range
}

// Events is the `events` block.
type Events struct {
	NATS *NATS
}

// NATS is `events { nats { ... } }`: the NATS JetStream publisher.
type NATS struct {
	URL           string
	SubjectPrefix string
	// Stream, when set, is created if missing (capturing SubjectPrefix.>).
	Stream      string
	MaxAttempts int
	DeclRange   hcl.Range
}

// DefaultSubjectPrefix is nats.subject_prefix's default.
const DefaultSubjectPrefix = "taskerd.events"

type webhookBody struct {
	URL         string   `hcl:"url"`
	Events      []string `hcl:"events,optional"`
	Namespaces  []string `hcl:"namespaces,optional"`
	SecretFile  string   `hcl:"secret_file"`
	MaxAttempts *int     `hcl:"max_attempts,optional"`
	Timeout     *string  `hcl:"timeout,optional"`
	BackoffBase *string  `hcl:"backoff_base,optional"`
	BackoffMax  *string  `hcl:"backoff_max,optional"`
	From        *string  `hcl:"from,optional"`
}

var eventsSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "nats"}}}

type natsBody struct {
	URL           string  `hcl:"url"`
	SubjectPrefix *string `hcl:"subject_prefix,optional"`
	Stream        *string `hcl:"stream,optional"`
	MaxAttempts   *int    `hcl:"max_attempts,optional"`
}

var (
	webhookNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	wNamespaceRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,127}$`)
	subjectRE     = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	streamRE      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// builtinEvents are taskerd's own event types.
var builtinEvents = []backends.EventType{
	backends.EventTaskInitializeRequested, backends.EventTaskStartRequested, backends.EventTaskCompleted,
	backends.EventTaskFailed, backends.EventTaskCancelled, backends.EventTaskResolvedManually, backends.EventTaskRetryRequested,
	backends.EventStepExecutionRequested, backends.EventStepCompleted, backends.EventStepFailed, backends.EventStepBackoff,
	backends.EventStepRetryRequested, backends.EventStepCancelled, backends.EventStepResolvedManually, backends.EventStepLeaseExpired,
	backends.EventViableStepsDiscovered, backends.EventTaskFinalized,
}

// checkEventPattern says what is wrong with an events pattern, "" if
// nothing: "*", "PREFIX.*", one of taskerd's event names, or a custom
// event's name (backends.ValidCustomEventName).
func checkEventPattern(p string) string {
	if p == "*" {
		return ""
	}
	if prefix, ok := strings.CutSuffix(p, ".*"); ok {
		for _, r := range backends.ReservedEventPrefixes {
			if prefix+"." == r {
				return ""
			}
		}
		if backends.ValidCustomEventName(prefix + ".x") {
			return ""
		}
		return fmt.Sprintf("%q is not a pattern: want \"*\", \"task.*\", \"step.*\", \"workflow.*\", a custom event prefix such as \"orders.*\", or an event name.", p)
	}
	if slices.Contains(builtinEvents, backends.EventType(p)) {
		return ""
	}
	if isReservedPrefix(p) {
		names := make([]string, len(builtinEvents))
		for i, e := range builtinEvents {
			names[i] = string(e)
		}
		return fmt.Sprintf("%q is not a taskerd event; they are %s.", p, strings.Join(names, ", "))
	}
	if backends.ValidCustomEventName(p) {
		return ""
	}
	return fmt.Sprintf("%q is not an event name: a custom event's name has a dot and only letters, digits, '_', '-' and '.'.", p)
}

func isReservedPrefix(s string) bool {
	for _, r := range backends.ReservedEventPrefixes {
		if strings.HasPrefix(s, r) {
			return true
		}
	}
	return false
}

// positiveDuration decodes an optional duration string.
func positiveDuration(b *hcl.Block, name, example string, s *string, dst *time.Duration) hcl.Diagnostics {
	if s == nil {
		return nil
	}
	d, err := time.ParseDuration(*s)
	if err != nil || d <= 0 {
		return hcl.Diagnostics{errorAt(attrRange(b, name), "Invalid "+name,
			fmt.Sprintf("%s must be a positive duration such as %q, not %q.", name, example, *s))}
	}
	*dst = d
	return nil
}

// attrRange is where attribute name of b is written (the block's header
// when it cannot tell).
func attrRange(b *hcl.Block, name string) hcl.Range {
	if attrs, _ := b.Body.JustAttributes(); attrs[name] != nil {
		return attrs[name].Expr.Range()
	}
	return b.DefRange
}

func decodeWebhook(dir string, b *hcl.Block) (*Webhook, hcl.Diagnostics) {
	name := b.Labels[0]
	var wb webhookBody
	diags := gohcl.DecodeBody(b.Body, nil, &wb)
	if diags.HasErrors() {
		return nil, diags
	}
	w := &Webhook{Name: name, URL: wb.URL, Events: wb.Events, Namespaces: wb.Namespaces, DeclRange: b.DefRange}
	if !webhookNameRE.MatchString(name) {
		diags = append(diags, errorAt(b.LabelRanges[0], "Invalid webhook name",
			fmt.Sprintf("Webhook name %q: use lower-case letters, digits, '_' and '-', starting with a letter (at most 63).", name)))
	}
	if u, err := url.Parse(wb.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		diags = append(diags, errorAt(attrRange(b, "url"), "Invalid webhook url",
			fmt.Sprintf("Webhook %q: url must be an http:// or https:// URL with a host.", name)))
	}
	for _, p := range wb.Events {
		if msg := checkEventPattern(p); msg != "" {
			diags = append(diags, errorAt(attrRange(b, "events"), "Invalid event pattern", fmt.Sprintf("Webhook %q: %s", name, msg)))
		}
	}
	for _, ns := range wb.Namespaces {
		if !wNamespaceRE.MatchString(ns) {
			diags = append(diags, errorAt(attrRange(b, "namespaces"), "Invalid namespace",
				fmt.Sprintf("Webhook %q: namespace %q: a namespace is letters, digits, '_' and '-', not starting with a digit or '-'.", name, ns)))
		}
	}
	if wb.SecretFile == "" {
		diags = append(diags, errorAt(attrRange(b, "secret_file"), "Invalid secret_file",
			fmt.Sprintf("Webhook %q: secret_file must name the file holding the signing secret.", name)))
	} else {
		w.SecretFile = wb.SecretFile
		if !filepath.IsAbs(w.SecretFile) {
			w.SecretFile = filepath.Join(dir, w.SecretFile)
		}
	}
	if wb.MaxAttempts != nil {
		w.MaxAttempts = *wb.MaxAttempts
		if w.MaxAttempts < 1 {
			diags = append(diags, errorAt(attrRange(b, "max_attempts"), "Invalid max_attempts",
				fmt.Sprintf("Webhook %q: max_attempts must be at least 1, not %d.", name, w.MaxAttempts)))
		}
	}
	diags = append(diags, positiveDuration(b, "timeout", "10s", wb.Timeout, &w.Timeout)...)
	diags = append(diags, positiveDuration(b, "backoff_base", "1s", wb.BackoffBase, &w.BackoffBase)...)
	diags = append(diags, positiveDuration(b, "backoff_max", "5m", wb.BackoffMax, &w.BackoffMax)...)
	if w.BackoffBase > 0 && w.BackoffMax > 0 && w.BackoffMax < w.BackoffBase {
		diags = append(diags, errorAt(attrRange(b, "backoff_max"), "Invalid backoff_max",
			fmt.Sprintf("Webhook %q: backoff_max (%s) is less than backoff_base (%s).", name, w.BackoffMax, w.BackoffBase)))
	}
	if wb.From != nil {
		switch *wb.From {
		case "end":
		case "beginning":
			w.FromBeginning = true
		default:
			diags = append(diags, errorAt(attrRange(b, "from"), "Invalid from",
				fmt.Sprintf("Webhook %q: from must be \"end\" (the default: only new events) or \"beginning\", not %q.", name, *wb.From)))
		}
	}
	return w, diags
}

func decodeEvents(b *hcl.Block) (*Events, hcl.Diagnostics) {
	content, diags := b.Body.Content(eventsSchema)
	e := &Events{}
	for _, blk := range content.Blocks {
		if e.NATS != nil {
			diags = append(diags, errorAt(blk.DefRange, "Duplicate nats block",
				fmt.Sprintf("Only one nats block is allowed. Previous definition was at %s.", e.NATS.DeclRange)))
			continue
		}
		n, d := decodeNATS(blk)
		diags = append(diags, d...)
		if n == nil {
			n = &NATS{DeclRange: blk.DefRange}
		}
		e.NATS = n
	}
	return e, diags
}

func decodeNATS(b *hcl.Block) (*NATS, hcl.Diagnostics) {
	var nb natsBody
	diags := gohcl.DecodeBody(b.Body, nil, &nb)
	if diags.HasErrors() {
		return nil, diags
	}
	n := &NATS{URL: nb.URL, SubjectPrefix: DefaultSubjectPrefix, DeclRange: b.DefRange}
	if nb.SubjectPrefix != nil {
		n.SubjectPrefix = *nb.SubjectPrefix
	}
	if nb.Stream != nil {
		n.Stream = *nb.Stream
	}
	for _, part := range strings.Split(nb.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) || u.Host == "" {
			diags = append(diags, errorAt(attrRange(b, "url"), "Invalid nats url",
				"events.nats.url must be nats://HOST:PORT (or tls://, ws://, wss://; several separated by commas)."))
			break
		}
	}
	if !subjectRE.MatchString(n.SubjectPrefix) {
		diags = append(diags, errorAt(attrRange(b, "subject_prefix"), "Invalid subject_prefix",
			fmt.Sprintf("events.nats.subject_prefix must be dot-separated tokens of letters, digits, '_' and '-' (no wildcards), not %q.", n.SubjectPrefix)))
	}
	if n.Stream != "" && !streamRE.MatchString(n.Stream) {
		diags = append(diags, errorAt(attrRange(b, "stream"), "Invalid stream",
			fmt.Sprintf("events.nats.stream must be letters, digits, '_' and '-', not %q.", n.Stream)))
	}
	if nb.MaxAttempts != nil {
		n.MaxAttempts = *nb.MaxAttempts
		if n.MaxAttempts < 1 {
			diags = append(diags, errorAt(attrRange(b, "max_attempts"), "Invalid max_attempts",
				fmt.Sprintf("events.nats.max_attempts must be at least 1, not %d.", n.MaxAttempts)))
		}
	}
	return n, diags
}
