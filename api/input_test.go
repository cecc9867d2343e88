package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
)

// createBody is a valid create request for shop/orders 1.0.0 with extra
// (",\"field\": value...") spliced in raw, so that a test can send bytes
// that are not UTF-8 (json.Marshal would replace them).
func createBody(extra string) string {
	return `{"workflow": "shop/orders", "version": "1.0.0", "context": {"order_id": "A"}` + extra + `}`
}

// quotedList is a JSON array of n copies of s (s is already JSON-safe).
func quotedList(n int, s string) string {
	items := make([]string, n)
	for i := range items {
		items[i] = `"` + s + `"`
	}
	return "[" + strings.Join(items, ",") + "]"
}

// Bad input gets one answer on every backend (issue 14, item 2): 400
// bad_request naming the field, or 422 for the context, and nothing is
// written. Before the fix SQLite stored most of these (201, 200) and
// PostgreSQL failed them (500).
func TestUnstorableInputIsRefusedOnEveryBackend(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{noRun: true})
		ctx := context.Background()
		r := c.do("POST", "/v1/tasks", createBody(`, "reason": "fixture", "tags": ["keep"]`))
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		id := int64(r.json(t)["id"].(float64))
		task := fmt.Sprintf("/v1/tasks/%d", id)

		countTasks := func() int {
			tasks, err := c.store.ListTasks(ctx, &backends.ListTasksParams{Limit: 1000})
			require.NoError(t, err)
			return len(tasks)
		}
		countTransitions := func() int {
			trs, err := c.store.ListTransitions(ctx, id)
			require.NoError(t, err)
			return len(trs)
		}
		tasksBefore, transitionsBefore := countTasks(), countTransitions()

		long := func(n int) string { return strings.Repeat("k", n) }
		for _, tc := range []struct {
			name         string
			method, path string
			body         string
			header       []string
			status       int
			field, in    string // for 400
		}{
			// POST /v1/tasks: body fields.
			{"tag with \\u0000", "POST", "/v1/tasks", createBody(`, "tags": ["ok", "a\u0000b"]`), nil, 400, "tags[1]", "body"},
			{"tag not UTF-8", "POST", "/v1/tasks", createBody(`, "tags": ["` + "\xff" + `"]`), nil, 400, "tags[0]", "body"},
			{"tag with a lone surrogate", "POST", "/v1/tasks", createBody(`, "tags": ["\ud800x"]`), nil, 400, "tags[0]", "body"},
			{"empty tag", "POST", "/v1/tasks", createBody(`, "tags": [""]`), nil, 400, "tags[0]", "body"},
			{"tag too long", "POST", "/v1/tasks", createBody(`, "tags": ["ok", "` + long(engine.MaxTagBytes+1) + `"]`), nil, 400, "tags[1]", "body"},
			{"too many tags", "POST", "/v1/tasks", createBody(`, "tags": ` + quotedList(engine.MaxTags+1, "t")), nil, 400, "tags", "body"},
			{"reason with \\u0000", "POST", "/v1/tasks", createBody(`, "reason": "why\u0000"`), nil, 400, "reason", "body"},
			{"reason not UTF-8", "POST", "/v1/tasks", createBody(`, "reason": "caf` + "\xc3" + `"`), nil, 400, "reason", "body"},
			{"reason too long", "POST", "/v1/tasks", createBody(`, "reason": "` + long(engine.MaxReasonBytes+1) + `"`), nil, 400, "reason", "body"},
			{"initiator with \\u0000", "POST", "/v1/tasks", createBody(`, "initiator": "\u0000"`), nil, 400, "initiator", "body"},
			{"source_system not UTF-8", "POST", "/v1/tasks", createBody(`, "source_system": "` + "\xed\xa0\x80" + `"`), nil, 400, "source_system", "body"},
			{"bypass step with \\u0000", "POST", "/v1/tasks", createBody(`, "bypass_steps": ["validate\u0000"]`), nil, 400, "bypass_steps[0]", "body"},
			{"workflow with \\u0000", "POST", "/v1/tasks", `{"workflow": "shop/orders\u0000"}`, nil, 400, "workflow", "body"},
			// The context: 422, as for one that does not match the schema.
			{"context not UTF-8", "POST", "/v1/tasks", `{"workflow": "shop/orders", "version": "1.0.0", "context": {"order_id": "A` + "\xff" + `"}}`, nil, 422, "", ""},
			{"context with \\u0000", "POST", "/v1/tasks", `{"workflow": "shop/orders", "version": "1.0.0", "context": {"order_id": "A\u0000"}}`, nil, 422, "", ""},
			{"context key with a lone surrogate", "POST", "/v1/tasks", `{"workflow": "shop/orders", "version": "1.0.0", "context": {"order_id": "A", "\udc00": 1}}`, nil, 422, "", ""},
			// POST /v1/tasks: the Idempotency-Key header.
			{"Idempotency-Key not UTF-8", "POST", "/v1/tasks", createBody(""), []string{"Idempotency-Key", "key-\xff"}, 400, "Idempotency-Key", "header"},
			{"Idempotency-Key over the index row size", "POST", "/v1/tasks", createBody(""), []string{"Idempotency-Key", long(3000)}, 400, "Idempotency-Key", "header"},
			{"Idempotency-Key one byte too long", "POST", "/v1/tasks", createBody(""), []string{"Idempotency-Key", long(engine.MaxIdempotencyKeyBytes + 1)}, 400, "Idempotency-Key", "header"},
			{"Idempotency-Key with a control character", "POST", "/v1/tasks", createBody(""), []string{"Idempotency-Key", "a\tb"}, 400, "Idempotency-Key", "header"},
			{"Idempotency-Key given twice", "POST", "/v1/tasks", createBody(""), []string{"Idempotency-Key", "k-1", "Idempotency-Key", "k-2"}, 400, "Idempotency-Key", "header"},
			// PATCH /v1/tasks/{id}.
			{"PATCH reason with \\u0000", "PATCH", task, `{"reason": "x\u0000"}`, nil, 400, "reason", "body"},
			{"PATCH reason not UTF-8", "PATCH", task, `{"reason": "` + "\xff" + `"}`, nil, 400, "reason", "body"},
			{"PATCH tag with \\u0000", "PATCH", task, `{"tags": ["x", "\u0000"]}`, nil, 400, "tags[1]", "body"},
			{"PATCH too many tags", "PATCH", task, `{"tags": ` + quotedList(engine.MaxTags+1, "t") + `}`, nil, 400, "tags", "body"},
			{"PATCH reason too long", "PATCH", task, `{"reason": "` + long(engine.MaxReasonBytes+1) + `"}`, nil, 400, "reason", "body"},
			// Operator actions.
			{"cancel reason with \\u0000", "POST", task + "/cancel", `{"reason": "dup\u0000"}`, nil, 400, "reason", "body"},
			{"cancel reason not UTF-8", "POST", task + "/cancel", `{"reason": "dup` + "\xfe" + `"}`, nil, 400, "reason", "body"},
			{"step cancel reason with \\u0000", "POST", task + "/steps/validate/cancel", `{"reason": "\u0000"}`, nil, 400, "reason", "body"},
			{"step resolve reason with \\u0000", "POST", task + "/steps/validate/resolve", `{"reason": "ok\u0000"}`, nil, 400, "reason", "body"},
			{"step resolve results not UTF-8", "POST", task + "/steps/validate/resolve", `{"results": {"a": "` + "\xff" + `"}}`, nil, 400, "results", "body"},
			{"step resolve results with \\u0000", "POST", task + "/steps/validate/resolve", `{"results": {"a": "\u0000"}}`, nil, 400, "results", "body"},
			{"step resolve results with a lone surrogate", "POST", task + "/steps/validate/resolve", `{"results": {"a": "\udbff"}}`, nil, 400, "results", "body"},
			// GET /v1/tasks filters.
			{"namespace filter %00", "GET", "/v1/tasks?namespace=%00", "", nil, 400, "namespace", "query"},
			{"tag filter %FF", "GET", "/v1/tasks?tag=%FF", "", nil, 400, "tag", "query"},
			{"workflow filter %00", "GET", "/v1/tasks?workflow=shop/%00", "", nil, 400, "workflow", "query"},
			{"status filter %00", "GET", "/v1/tasks?status=%00", "", nil, 400, "status", "query"},
			{"cursor %FF", "GET", "/v1/tasks?cursor=%FF", "", nil, 400, "cursor", "query"},
			{"created_after %00", "GET", "/v1/tasks?created_after=%00", "", nil, 400, "created_after", "query"},
		} {
			var r response
			if len(tc.header) > 2 {
				r = c.doMulti(tc.method, tc.path, tc.body, tc.header...)
			} else {
				r = c.do(tc.method, tc.path, tc.body, tc.header...)
			}
			require.Equal(t, tc.status, r.status, "%s: %s", tc.name, r.body)
			e := r.json(t)["error"].(map[string]any)
			if tc.status == http.StatusUnprocessableEntity {
				require.Equal(t, "unprocessable", e["code"], tc.name)
				require.Contains(t, e["message"], "the context cannot be stored", tc.name)
				violations := e["details"].([]any)
				require.Len(t, violations, 1, tc.name)
				require.Contains(t, violations[0].(map[string]any)["message"], "context cannot be stored", tc.name)
				continue
			}
			require.Equal(t, "bad_request", e["code"], tc.name)
			require.Equal(t, map[string]any{"field": tc.field, "in": tc.in}, e["details"], "%s: %s", tc.name, r.body)
			require.Contains(t, e["message"], tc.field, "%s: the message names the field", tc.name)
		}

		require.Equal(t, tasksBefore, countTasks(), "no refused request created a task")
		require.Equal(t, transitionsBefore, countTransitions(), "no refused request wrote a transition")
		got, err := c.store.GetTask(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "fixture", got.Reason)
		require.Equal(t, []string{"keep"}, got.Tags)
		require.Equal(t, backends.StatePending, got.State)

		// At the limits, and with text both backends store (an escaped
		// surrogate pair, a tab in a reason), the same requests succeed
		// and read back byte for byte.
		reason := "tab\there, \U0001F600 " + long(engine.MaxReasonBytes-len("tab\there, \U0001F600 "))
		tag := "\u00e9" + long(engine.MaxTagBytes-2)
		body := `{"workflow": "shop/orders", "version": "1.0.0", "context": {"order_id": "\ud83d\ude00"}, "reason": "tab\there, \ud83d\ude00 ` +
			long(engine.MaxReasonBytes-len("tab\there, \U0001F600 ")) + `", "tags": ` + quotedList(engine.MaxTags-1, "t") + `, "initiator": "` + tag + `"}`
		body = strings.Replace(body, `"tags": [`, `"tags": ["`+tag+`",`, 1)
		key := strings.Repeat("~", engine.MaxIdempotencyKeyBytes)
		r = c.do("POST", "/v1/tasks", body, "Idempotency-Key", key)
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		created, err := c.store.GetTask(ctx, int64(r.json(t)["id"].(float64)))
		require.NoError(t, err)
		require.Equal(t, reason, created.Reason)
		require.Len(t, created.Tags, engine.MaxTags)
		require.Equal(t, tag, created.Tags[0])
		require.Equal(t, tag, created.Initiator)
		require.Equal(t, key, created.IdempotencyKey)
		require.JSONEq(t, `{"order_id": "\ud83d\ude00"}`, string(created.Context))
		require.Equal(t, tasksBefore+1, countTasks())
	})
}

// doMulti is do with headers added rather than set, so that one may be
// sent twice.
func (c *client) doMulti(method, path, body string, header ...string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, strings.NewReader(body))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	res, err := c.srv.Client().Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	return response{status: res.StatusCode, header: res.Header, body: raw}
}

// The limits api/openapi.yaml documents are the engine's.
func TestOpenAPIDocumentsTheInputLimits(t *testing.T) {
	t.Parallel()
	doc, err := api.OpenAPI()
	require.NoError(t, err)
	var spec struct {
		Paths struct {
			Tasks struct {
				Post struct {
					Parameters []struct {
						Name   string `json:"name"`
						In     string `json:"in"`
						Schema struct {
							MaxLength int `json:"maxLength"`
						} `json:"schema"`
					} `json:"parameters"`
				} `json:"post"`
			} `json:"/v1/tasks"`
		} `json:"paths"`
		Components struct {
			Schemas struct {
				Reason struct {
					MaxLength int `json:"maxLength"`
				} `json:"Reason"`
				Label struct {
					MaxLength int `json:"maxLength"`
				} `json:"Label"`
				Tags struct {
					MaxItems int `json:"maxItems"`
					Items    struct {
						MinLength int `json:"minLength"`
						MaxLength int `json:"maxLength"`
					} `json:"items"`
				} `json:"Tags"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, jsonUnmarshal(doc, &spec))
	s := spec.Components.Schemas
	require.Equal(t, engine.MaxReasonBytes, s.Reason.MaxLength)
	require.Equal(t, engine.MaxLabelBytes, s.Label.MaxLength)
	require.Equal(t, engine.MaxTags, s.Tags.MaxItems)
	require.Equal(t, 1, s.Tags.Items.MinLength)
	require.Equal(t, engine.MaxTagBytes, s.Tags.Items.MaxLength)
	var key int
	for _, p := range spec.Paths.Tasks.Post.Parameters {
		if p.Name == "Idempotency-Key" && p.In == "header" {
			key = p.Schema.MaxLength
		}
	}
	require.Equal(t, engine.MaxIdempotencyKeyBytes, key)
}
