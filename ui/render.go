package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

// pageSet holds one template set per page: the layout, the shared
// partials and the page's own file.
type pageSet struct {
	pages map[string]*template.Template
}

var funcs = template.FuncMap{
	"time":     timeTag,
	"pretty":   prettyJSON,
	"errmsg":   errorMessage,
	"duration": stepDuration,
	"finished": isFinished,
	"join":     strings.Join,
	"trim":     trimTo,
	"dict": func(kv ...any) map[string]any {
		m := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			m[fmt.Sprint(kv[i])] = kv[i+1]
		}
		return m
	},
}

func loadPages() (*pageSet, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	ps := &pageSet{pages: map[string]*template.Template{}}
	for _, n := range names {
		base := strings.TrimPrefix(n, "templates/")
		if base == "layout.html" || base == "partials.html" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", n)
		if err != nil {
			return nil, fmt.Errorf("ui: parsing %s: %w", n, err)
		}
		ps.pages[base] = t
	}
	return ps, nil
}

// view is what every page's template gets.
type view struct {
	Title   string
	Nav     string
	Subject string
	CSRF    string
	Data    any
}

func (u *UI) render(c *call, status int, page, title string, data any) {
	v := view{Title: title, Nav: page, CSRF: c.csrf, Data: data}
	if c.subject != nil {
		v.Subject = c.subject.ID
	}
	u.execute(c, status, page, "layout", v)
}

// fragment renders one named template of a page's set, without the
// layout (what app.js swaps in).
func (u *UI) fragment(c *call, page, name string, data any) {
	u.execute(c, http.StatusOK, page, name, view{CSRF: c.csrf, Data: data})
}

func (u *UI) execute(c *call, status int, page, name string, v view) {
	t := u.pages.pages[page]
	var buf bytes.Buffer
	if t == nil {
		u.log.Error("ui: no such template", "page", page)
		http.Error(c.w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, name, v); err != nil {
		u.log.ErrorContext(c.r.Context(), "ui: rendering failed", "page", page, "err", err)
		http.Error(c.w, "internal error", http.StatusInternalServerError)
		return
	}
	h := c.w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	c.w.WriteHeader(status)
	_, _ = c.w.Write(buf.Bytes())
}

// timeTag renders a time for app.js to show in the browser's zone, with
// the UTC time as the text until it does.
func timeTag(v any) template.HTML {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return ""
		}
		t = *x
	default:
		return ""
	}
	if t.IsZero() {
		return ""
	}
	u := t.UTC()
	return template.HTML(fmt.Sprintf(`<time datetime="%s">%s</time>`, u.Format(time.RFC3339Nano), template.HTMLEscapeString(u.Format("2006-01-02 15:04:05 UTC"))))
}

func prettyJSON(v any) string {
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	default:
		var err error
		if raw, err = json.Marshal(x); err != nil {
			return fmt.Sprint(v)
		}
	}
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return string(raw)
	}
	return out.String()
}

// errorMessage is a step error's message (the API's error object), or
// the raw JSON when it has none.
func errorMessage(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Message != "" {
		return e.Message
	}
	return string(raw)
}

func stepDuration(s stepJSON) string {
	if s.StartedAt == nil {
		return ""
	}
	end := s.ProcessedAt
	if end == nil {
		end = s.LastFailureAt
	}
	if end == nil || end.Before(*s.StartedAt) {
		return ""
	}
	d := end.Sub(*s.StartedAt)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}
