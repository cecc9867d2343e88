package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/taskerd/taskerd/plugin"
)

const (
	// DefaultTimeout bounds one request when neither the plugin nor the
	// step sets a timeout. The step's own deadline (its workflow timeout)
	// applies as well; the earlier one wins.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxResponseBytes caps a response body: 1 MiB. A step result is
	// stored in the database and handed to every child step, so it should
	// stay small.
	DefaultMaxResponseBytes = 1 << 20
	// MaxRetryAfter caps the wait a server may ask for with Retry-After:
	// longer waits are the workflow's retry policy's business, not one
	// server's.
	MaxRetryAfter = 300 * time.Second
	// errorSnippetBytes is how much of a failed response's body goes into
	// the step's error message.
	errorSnippetBytes = 256
)

// Failure kinds, stored in the step's error next to the message. A failed
// status has the kind http_STATUS (http_404, http_503...).
const (
	KindInvalidConfig    = "invalid_config"
	KindTemplate         = "template_error"
	KindNetwork          = "network_error"
	KindTimeout          = "timeout"
	KindCancelled        = "cancelled"
	KindResponseTooLarge = "response_too_large"
	KindInvalidResponse  = "invalid_response"
)

// PluginConfig is the plugin's `config` in taskerd.hcl: defaults for every
// step that uses http.request.
type PluginConfig struct {
	// BaseURL is prefixed to a step's url that is not absolute.
	BaseURL string `json:"base_url"`
	// Headers are sent with every request; a step's headers override them
	// (names compare case-insensitively). Values may hold placeholders.
	Headers map[string]string `json:"headers"`
	// Timeout bounds one request, as a Go duration ("10s"); default 30s.
	Timeout string `json:"timeout"`
	// MaxResponseBytes caps a response body; default 1 MiB.
	MaxResponseBytes int64 `json:"max_response_bytes"`
}

// StepConfig is a step's `config`: the request to make.
type StepConfig struct {
	// Method is the HTTP method; default GET.
	Method string `json:"method"`
	// URL is absolute, or a path joined to the plugin's base_url.
	// Placeholders are percent-escaped for where they stand (path or
	// query).
	URL string `json:"url"`
	// Query parameters added to the URL; values may hold placeholders.
	Query map[string]string `json:"query"`
	// Headers override the plugin's; values may hold placeholders.
	Headers map[string]string `json:"headers"`
	// Body: a JSON string is sent as text (text/plain unless a
	// Content-Type header says otherwise); any other JSON value is sent as
	// JSON (application/json) after filling the placeholders in its
	// strings.
	Body json.RawMessage `json:"body"`
	// Timeout and MaxResponseBytes override the plugin's.
	Timeout          string `json:"timeout"`
	MaxResponseBytes int64  `json:"max_response_bytes"`
}

// Response is the result of a successful step.
type Response struct {
	Status int `json:"status"`
	// Headers by canonical name; repeated headers joined with ", ".
	Headers map[string]string `json:"headers"`
	// Body is the decoded JSON when the response says it is JSON, the text
	// otherwise, null when empty.
	Body any `json:"body"`
	// BodyBase64 holds a body that is not UTF-8 text, instead of Body.
	BodyBase64 string `json:"body_base64,omitempty"`
}

type settings struct {
	baseURL          *url.URL
	headers          map[string]string
	timeout          time.Duration
	maxResponseBytes int64
}

// Service makes the requests. Its zero value is not usable: use New.
type Service struct {
	client   *http.Client
	settings atomic.Pointer[settings]
	// now is the clock used to read Retry-After dates.
	now func() time.Time
}

// New returns a Service with the default settings; Configure changes them.
func New() *Service {
	s := &Service{
		client: &http.Client{
			Transport:     http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: sameHostRedirects,
		},
		now: time.Now,
	}
	s.settings.Store(&settings{timeout: DefaultTimeout, maxResponseBytes: DefaultMaxResponseBytes})
	return s
}

// maxRedirects bounds the redirects one request follows.
const maxRedirects = 10

// sameHostRedirects follows a redirect only to the same host (and port),
// over the same scheme or from http to https. Go drops Authorization and
// Cookie on a redirect elsewhere, but not other headers: an X-Api-Key from
// the plugin config must not travel to whatever host a server names. A
// redirect that is not followed is returned as the 3xx response it is.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	from := via[0].URL
	sameScheme := req.URL.Scheme == from.Scheme || (from.Scheme == "http" && req.URL.Scheme == "https")
	if req.URL.Host != from.Host || !sameScheme {
		return http.ErrUseLastResponse
	}
	return nil
}

// strictDecode decodes raw into v, refusing unknown fields: a misspelt key
// ("max_respones_bytes") should be an error, not a silent default.
func strictDecode(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func parseTimeout(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("timeout %q: want a positive duration such as \"10s\"", s)
	}
	return d, nil
}

// Configure applies the plugin's config (plugin.WithConfigure).
func (s *Service) Configure(_ context.Context, raw json.RawMessage) error {
	var c PluginConfig
	if err := strictDecode(raw, &c); err != nil {
		return fmt.Errorf("http plugin config: %w", err)
	}
	st := &settings{headers: c.Headers, maxResponseBytes: DefaultMaxResponseBytes}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("http plugin config: base_url %q: want an absolute http or https URL", c.BaseURL)
		}
		st.baseURL = u
	}
	var err error
	if st.timeout, err = parseTimeout(c.Timeout, DefaultTimeout); err != nil {
		return fmt.Errorf("http plugin config: %w", err)
	}
	if c.MaxResponseBytes < 0 {
		return fmt.Errorf("http plugin config: max_response_bytes must be positive, not %d", c.MaxResponseBytes)
	}
	if c.MaxResponseBytes > 0 {
		st.maxResponseBytes = c.MaxResponseBytes
	}
	s.settings.Store(st)
	return nil
}

func permanent(kind string, format string, args ...any) error {
	return plugin.Permanent(plugin.WithKind(fmt.Errorf(format, args...), kind))
}

// Request is the http.request handler: it makes the request the step's
// config describes and classifies the outcome.
func (s *Service) Request(ctx context.Context, req *plugin.Request) (any, error) {
	st := s.settings.Load()
	var cfg StepConfig
	if err := strictDecode(req.Config, &cfg); err != nil {
		return nil, permanent(KindInvalidConfig, "config of step %q: %w", req.StepName, err)
	}
	timeout, err := parseTimeout(cfg.Timeout, st.timeout)
	if err != nil {
		return nil, permanent(KindInvalidConfig, "config of step %q: %w", req.StepName, err)
	}
	limit := st.maxResponseBytes
	if cfg.MaxResponseBytes < 0 {
		return nil, permanent(KindInvalidConfig, "config of step %q: max_response_bytes must be positive", req.StepName)
	}
	if cfg.MaxResponseBytes > 0 {
		limit = cfg.MaxResponseBytes
	}

	httpReq, err := buildRequest(ctx, st, &cfg, newScope(req))
	if err != nil {
		kind := KindInvalidConfig
		if isTemplateError(err) {
			kind = KindTemplate
		}
		return nil, permanent(kind, "step %q: %w", req.StepName, err)
	}
	where := httpReq.Method + " " + redactedURL(httpReq.URL)

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := s.client.Do(httpReq.WithContext(ctx))
	if err != nil {
		return nil, transportFailure(ctx, where, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, s.statusFailure(where, resp)
	}
	if resp.ContentLength > limit {
		return nil, permanent(KindResponseTooLarge, "%s: the response body is %d bytes, over the %d-byte limit", where, resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, transportFailure(ctx, where, fmt.Errorf("reading the response: %w", err))
	}
	if int64(len(body)) > limit {
		return nil, permanent(KindResponseTooLarge, "%s: the response body is over the %d-byte limit", where, limit)
	}
	out, err := decodeResponse(where, resp, body)
	if err != nil {
		return nil, err // not a typed nil in the any
	}
	return out, nil
}

// buildRequest renders the step's request. Its errors are permanent: the
// same config and inputs would fail the same way on every attempt.
func buildRequest(ctx context.Context, st *settings, cfg *StepConfig, sc *scope) (*http.Request, error) {
	method := strings.ToUpper(cfg.Method)
	if method == "" {
		method = http.MethodGet
	}
	if !validToken(method) {
		return nil, fmt.Errorf("method %q is not an HTTP method", cfg.Method)
	}
	if cfg.URL == "" {
		return nil, errors.New("config has no url")
	}
	raw, err := sc.render(cfg.URL, func(v string, inQuery bool) string {
		if inQuery {
			return url.QueryEscape(v)
		}
		return url.PathEscape(v)
	})
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", cfg.URL, err)
	}
	if !u.IsAbs() {
		if st.baseURL == nil {
			return nil, fmt.Errorf("url %q is not absolute and the plugin has no base_url", cfg.URL)
		}
		// Join rather than resolve: with base_url "https://api/v1", both
		// "orders" and "/orders" mean https://api/v1/orders, where RFC 3986
		// resolution would drop the v1 of the second.
		joined := strings.TrimRight(st.baseURL.String(), "/") + "/" + strings.TrimLeft(raw, "/")
		if u, err = url.Parse(joined); err != nil {
			return nil, fmt.Errorf("url %q: %w", joined, err)
		}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url %q: want http or https", redactedURL(u))
	}
	if len(cfg.Query) > 0 {
		q := u.Query()
		for _, k := range sortedKeys(cfg.Query) {
			v, err := sc.render(cfg.Query[k], nil)
			if err != nil {
				return nil, fmt.Errorf("query %q: %w", k, err)
			}
			q.Add(k, v)
		}
		u.RawQuery = q.Encode()
	}

	header := http.Header{}
	for _, hs := range []map[string]string{st.headers, cfg.Headers} {
		for _, k := range sortedKeys(hs) {
			if !validToken(k) {
				return nil, fmt.Errorf("header name %q is not valid", k)
			}
			v, err := sc.render(hs[k], nil)
			if err != nil {
				return nil, fmt.Errorf("header %q: %w", k, err)
			}
			// A filled-in value must not smuggle in another header.
			if strings.ContainsAny(v, "\r\n\x00") {
				return nil, fmt.Errorf("header %q: the value holds a line break or NUL", k)
			}
			header.Set(k, v)
		}
	}

	var body io.Reader
	if len(bytes.TrimSpace(cfg.Body)) > 0 && string(cfg.Body) != "null" {
		doc, err := decodeJSON(cfg.Body)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		if tmpl, ok := doc.(string); ok {
			t, err := sc.render(tmpl, nil)
			if err != nil {
				return nil, fmt.Errorf("body: %w", err)
			}
			body = strings.NewReader(t)
			if header.Get("Content-Type") == "" {
				header.Set("Content-Type", "text/plain; charset=utf-8")
			}
		} else {
			filled, err := sc.renderJSON(doc)
			if err != nil {
				return nil, fmt.Errorf("body: %w", err)
			}
			b, err := json.Marshal(filled)
			if err != nil {
				return nil, fmt.Errorf("body: %w", err)
			}
			body = bytes.NewReader(b)
			if header.Get("Content-Type") == "" {
				header.Set("Content-Type", "application/json")
			}
		}
	}
	r, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	r.Header = header
	if r.Header.Get("User-Agent") == "" {
		r.Header.Set("User-Agent", "taskerd-http-plugin")
	}
	return r, nil
}

// transportFailure classifies an error from sending the request or reading
// the response: a network error may pass, so it is retryable.
func transportFailure(ctx context.Context, where string, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return plugin.Retryable(plugin.WithKind(fmt.Errorf("%s: timed out: %w", where, context.DeadlineExceeded), KindTimeout))
	case errors.Is(ctx.Err(), context.Canceled):
		return plugin.Retryable(plugin.WithKind(fmt.Errorf("%s: %w", where, context.Canceled), KindCancelled))
	}
	// url.Error repeats the method and the full URL (with its query); the
	// message already says where, without the query.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return plugin.Retryable(plugin.WithKind(fmt.Errorf("%s: %w", where, err), KindNetwork))
}

// statusFailure classifies a response outside 2xx.
func (s *Service) statusFailure(where string, resp *http.Response) error {
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, errorSnippetBytes))
	msg := fmt.Sprintf("%s: %s", where, resp.Status)
	if t := strings.TrimSpace(strings.ToValidUTF8(string(snippet), "?")); t != "" {
		msg += ": " + t
	}
	err := plugin.WithKind(errors.New(msg), "http_"+strconv.Itoa(resp.StatusCode))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), s.now()); ok {
			return plugin.RetryAfter(err, d)
		}
		return plugin.Retryable(err)
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusUnprocessableEntity:
		// The request itself is wrong; sending it again cannot help.
		return plugin.Permanent(err)
	}
	return plugin.Retryable(err)
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3), capped at MaxRetryAfter. ok is false when the header
// is absent or unreadable, or the date has passed.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true
		}
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(h); err == nil {
		d = at.Sub(now)
		if d <= 0 {
			return 0, false
		}
	} else {
		return 0, false
	}
	return min(d, MaxRetryAfter), true
}

// decodeResponse turns a 2xx response into the step's result.
func decodeResponse(where string, resp *http.Response, body []byte) (*Response, error) {
	out := &Response{Status: resp.StatusCode, Headers: map[string]string{}}
	for k, vs := range resp.Header {
		out.Headers[k] = strings.Join(vs, ", ")
	}
	if len(body) == 0 {
		return out, nil
	}
	if isJSON(resp.Header.Get("Content-Type")) {
		v, err := decodeJSON(body)
		if err != nil {
			// A server that briefly answers garbage may answer properly
			// next time.
			return nil, plugin.Retryable(plugin.WithKind(fmt.Errorf("%s: the response says it is JSON but is not: %w", where, err), KindInvalidResponse))
		}
		out.Body = v
		return out, nil
	}
	if utf8.Valid(body) {
		out.Body = string(body)
	} else {
		out.BodyBase64 = base64.StdEncoding.EncodeToString(body)
	}
	return out, nil
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// redactedURL is u for messages: without its query (where API keys tend to
// travel) and without a password.
func redactedURL(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	c.ForceQuery = false
	c.Fragment = ""
	return c.Redacted()
}

// validToken reports whether s is an RFC 9110 token (method, header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
