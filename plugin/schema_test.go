package plugin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

type schemaAddress struct {
	City string `json:"city"`
	Zip  string `json:"zip,omitempty"`
}

type schemaBase struct {
	ID      string `json:"id"`
	Shadow  int    `json:"shadow"`
	Created time.Time
}

type schemaExtra struct {
	Note string `json:"note"`
}

type schemaLevel int

func (l schemaLevel) MarshalText() ([]byte, error) { return []byte("high"), nil }

type schemaResult struct {
	schemaBase
	*schemaExtra
	Shadow   string          `json:"shadow"` // shallower: wins over schemaBase's
	Name     string          `json:"name"`
	Count    uint16          `json:"count"`
	Ratio    float64         `json:"ratio,omitempty"`
	Flag     bool            `json:"flag,omitzero"`
	Amount   int64           `json:"amount,string"`
	Tags     []string        `json:"tags"`
	Fixed    [2]int          `json:"fixed"`
	Labels   map[string]int  `json:"labels"`
	ByID     map[int]bool    `json:"by_id"`
	Address  *schemaAddress  `json:"address"`
	Raw      json.RawMessage `json:"raw"`
	Anything any             `json:"anything"`
	Blob     []byte          `json:"blob"`
	Wait     time.Duration   `json:"wait"`
	Level    schemaLevel     `json:"level"`
	Nested   []schemaAddress `json:"nested"`
	Skipped  string          `json:"-"`
	Dash     string          `json:"-,"`
	hidden   string          //nolint:unused // unexported: not encoded
	ByLevel  map[schemaLevel]string
}

func TestSchemaOfFollowsEncodingJSON(t *testing.T) {
	t.Parallel()
	raw, err := SchemaOf[schemaResult]()
	require.NoError(t, err)
	require.JSONEq(t, `{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"type": "object",
		"required": ["id", "shadow", "Created", "name", "count", "amount", "tags", "fixed", "labels", "by_id", "address", "raw", "anything", "blob", "wait", "level", "nested", "-", "ByLevel"],
		"properties": {
			"id": {"type": "string"},
			"Created": {"type": "string", "format": "date-time"},
			"note": {"type": "string"},
			"shadow": {"type": "string"},
			"name": {"type": "string"},
			"count": {"type": "integer", "minimum": 0},
			"ratio": {"type": "number"},
			"flag": {"type": "boolean"},
			"amount": {"type": "string"},
			"tags": {"type": ["array", "null"], "items": {"type": "string"}},
			"fixed": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
			"labels": {"type": ["object", "null"], "additionalProperties": {"type": "integer"}},
			"by_id": {"type": ["object", "null"], "additionalProperties": {"type": "boolean"}},
			"address": {"type": ["object", "null"], "required": ["city"], "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}},
			"raw": {},
			"anything": {},
			"blob": {"type": ["string", "null"], "contentEncoding": "base64"},
			"wait": {"type": "integer"},
			"level": {"type": "string"},
			"nested": {"type": ["array", "null"], "items": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}}},
			"-": {"type": "string"},
			"ByLevel": {"type": ["object", "null"], "additionalProperties": {"type": "string"}}
		}
	}`, string(raw))
}

// What json.Marshal writes for a type conforms to the type's schema, and
// values it cannot write do not.
func TestSchemaOfAcceptsWhatMarshalWrites(t *testing.T) {
	t.Parallel()
	raw, err := SchemaOf[schemaResult]()
	require.NoError(t, err)
	sch := compileSchema(t, raw)

	for name, v := range map[string]schemaResult{
		"zero": {},
		"full": {
			schemaBase:  schemaBase{ID: "x", Created: time.Now()},
			schemaExtra: &schemaExtra{Note: "n"},
			Name:        "a", Count: 3, Ratio: 0.5, Flag: true, Amount: 12,
			Tags: []string{"a"}, Labels: map[string]int{"a": 1}, ByID: map[int]bool{3: true},
			Address: &schemaAddress{City: "Paris", Zip: "75001"}, Raw: json.RawMessage(`[1,{"a":null}]`),
			Anything: map[string]any{"x": []any{1}}, Blob: []byte("hi"), Wait: time.Second,
			Nested: []schemaAddress{{City: "c"}}, ByLevel: map[schemaLevel]string{1: "x"},
		},
	} {
		b, err := json.Marshal(v)
		require.NoError(t, err, name)
		require.NoError(t, sch.Validate(decodeJSON(t, b)), "%s: %s", name, b)
	}
	for _, bad := range []string{
		`{"id": "x"}`, // required fields missing
		`[]`,
	} {
		require.Error(t, sch.Validate(decodeJSON(t, []byte(bad))), bad)
	}
}

func TestSchemaOfScalarsAndPointers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got  func() (json.RawMessage, error)
		want string
	}{
		{SchemaOf[string], `{"type":"string"}`},
		{SchemaOf[*int], `{"type":["integer","null"]}`},
		{SchemaOf[**bool], `{"type":["boolean","null"]}`},
		{SchemaOf[any], `{}`},
		{SchemaOf[*json.RawMessage], `{}`},
		{SchemaOf[*[]int], `{"type":["array","null"],"items":{"type":"integer"}}`},
		{SchemaOf[time.Time], `{"type":"string","format":"date-time"}`},
		{SchemaOf[*time.Time], `{"type":["string","null"],"format":"date-time"}`},
		{SchemaOf[*schemaLevel], `{"type":["string","null"]}`},
	} {
		raw, err := tc.got()
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		require.Equal(t, schemaDraft, m["$schema"])
		delete(m, "$schema")
		b, err := json.Marshal(m)
		require.NoError(t, err)
		require.JSONEq(t, tc.want, string(b))
	}
}

type schemaTree struct {
	Children []schemaTree `json:"children"`
}

func TestSchemaOfRefusesWhatItCannotDescribe(t *testing.T) {
	t.Parallel()
	_, err := SchemaOf[schemaTree]()
	require.ErrorContains(t, err, "plugin.schemaTree is recursive")

	_, err = SchemaOf[struct{ C chan int }]()
	require.ErrorContains(t, err, "field C of")
	require.ErrorContains(t, err, "chan int")

	_, err = SchemaOf[map[[2]int]string]()
	require.ErrorContains(t, err, "map key of type [2]int")

	_, err = SchemaOf[func()]()
	require.ErrorContains(t, err, "encoding/json cannot encode it")
}

// A struct reached twice, not inside itself, is not recursive.
func TestSchemaOfRepeatedTypeIsNotRecursive(t *testing.T) {
	t.Parallel()
	raw, err := SchemaOf[struct {
		From schemaAddress `json:"from"`
		To   schemaAddress `json:"to"`
	}]()
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(string(raw), `"city"`)/2)
}

func compileSchema(t *testing.T, raw json.RawMessage) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("test.json", decodeJSON(t, raw)))
	sch, err := c.Compile("test.json")
	require.NoError(t, err)
	return sch
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(b)))
	require.NoError(t, err)
	return v
}
