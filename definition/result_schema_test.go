package definition

import (
	"errors"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

func TestResultSchema(t *testing.T) {
	t.Parallel()
	ws, diags := parse(t, `workflow "w" {
  step "charge" {
    handler = "payments.charge"
    result_schema = {
      type     = "object"
      required = ["payment_id"]
      properties = { payment_id = { type = "string" } }
    }
  }
  step "plain" { handler = "builtin.noop" }
}`)
	require.Empty(t, diags)
	charge, plain := ws[0].Step("charge"), ws[0].Step("plain")
	require.JSONEq(t, `{"type":"object","required":["payment_id"],"properties":{"payment_id":{"type":"string"}}}`, string(charge.ResultSchema))
	require.Nil(t, plain.ResultSchema)

	require.NoError(t, charge.ValidateResult(map[string]any{"payment_id": "p1", "extra": true}))
	err := charge.ValidateResult(map[string]any{"payment_id": 3})
	var ve *jsonschema.ValidationError
	require.True(t, errors.As(err, &ve), "got %v", err)
	require.Contains(t, ve.BasicOutput().Errors[len(ve.BasicOutput().Errors)-1].InstanceLocation, "/payment_id")
	require.Error(t, charge.ValidateResult(map[string]any{}))
	require.NoError(t, plain.ValidateResult("anything"), "no schema: no check")
}

// What plugin.SchemaOf prints is JSON, and JSON is HCL object syntax: it
// can be pasted as is.
func TestResultSchemaWrittenAsJSON(t *testing.T) {
	t.Parallel()
	ws, diags := parse(t, `workflow "w" {
  step "charge" {
    handler = "payments.charge"
    result_schema = {"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"ids":{"type":["array","null"],"items":{"type":"integer","minimum":0}},"raw":{}},"required":["ids"]}
  }
}`)
	require.Empty(t, diags)
	s := ws[0].Step("charge")
	require.NoError(t, s.ValidateResult(map[string]any{"ids": nil}))
	require.Error(t, s.ValidateResult(map[string]any{"ids": []any{-1}}))
}

func TestResultSchemaErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, attr string
		want       wantDiag
	}{
		{"not a schema", `{ type = "objekt" }`, wantDiag{"Invalid result_schema", 4, 21, "does not conform to JSON Schema"}},
		{"not an object", `["type"]`, wantDiag{"Invalid result_schema", 4, 21, "result_schema must be an object"}},
		{"another document", `{ "$ref" = "https://example.com/charge.json" }`, wantDiag{"Invalid result_schema", 4, 21, "result_schema may only refer to itself"}},
		{"a variable", `{ type = var.t }`, wantDiag{"Variables not allowed", 4, 30, "Variables may not be used here"}},
	} {
		src := strings.Join([]string{
			`workflow "w" {`,
			`  step "charge" {`,
			`    handler = "payments.charge"`,
			`    result_schema = ` + tc.attr,
			`  }`,
			`}`,
		}, "\n")
		ws, diags := parse(t, src)
		require.Empty(t, ws, tc.name)
		requireDiags(t, diags, tc.want)
	}
}
