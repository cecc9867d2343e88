package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/stretchr/testify/require"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

type chargeInput struct {
	OrderID  string `json:"order_id"`
	Currency string `json:"currency"`
	Limits   struct {
		Max int `json:"max"`
		Min int `json:"min"`
	} `json:"limits"`
}

type chargeResult struct {
	OrderID  string `json:"order_id"`
	Currency string `json:"currency"`
	Max      int    `json:"max"`
	Min      int    `json:"min"`
	Note     string `json:"note,omitempty"`
}

func charge(_ context.Context, _ *Request, in chargeInput) (chargeResult, error) {
	if in.OrderID == "fail" {
		return chargeResult{}, RetryAfter(errors.New("gateway down"), 0)
	}
	return chargeResult{OrderID: in.OrderID, Currency: in.Currency, Max: in.Limits.Max, Min: in.Limits.Min}, nil
}

func TestTypedDecodesContextThenConfig(t *testing.T) {
	t.Parallel()
	h := Typed(charge)
	got, err := h(context.Background(), &Request{
		StepName: "charge",
		Context:  json.RawMessage(`{"order_id":"A-1","currency":"USD","limits":{"max":10,"min":1},"other_step_key":true}`),
		Config:   json.RawMessage(`{"currency":"EUR","limits":{"max":99}}`),
	})
	require.NoError(t, err)
	// The config overrides what it sets; a nested struct is merged.
	require.Equal(t, chargeResult{OrderID: "A-1", Currency: "EUR", Max: 99, Min: 1}, got)

	got, err = h(context.Background(), &Request{StepName: "charge"})
	require.NoError(t, err, "no context and no config: the zero input")
	require.Equal(t, chargeResult{}, got)

	got, err = h(context.Background(), &Request{StepName: "charge", Context: json.RawMessage(`{"order_id":"B"}`), Config: json.RawMessage(`null`)})
	require.NoError(t, err)
	require.Equal(t, chargeResult{OrderID: "B"}, got)
}

func TestTypedInputFailuresArePermanent(t *testing.T) {
	t.Parallel()
	h := Typed(charge)
	for _, tc := range []struct {
		name          string
		context, conf string
		want          []string
	}{
		{"context of the wrong type", `{"order_id": 12}`, ``,
			[]string{`step "charge": its input (the task context) does not decode into *plugin.chargeInput`, "order_id"}},
		{"config of the wrong type", `{}`, `{"limits": []}`,
			[]string{`(the step config)`, "limits"}},
		{"unknown config key", `{}`, `{"curency": "EUR"}`,
			[]string{`(the step config)`, `unknown field "curency"`}},
		{"config not an object", `{}`, `"EUR"`,
			[]string{`(the step config)`}},
		{"context not an object", `[1]`, ``,
			[]string{`(the task context)`}},
	} {
		_, err := h(context.Background(), &Request{StepName: "charge", Context: json.RawMessage(tc.context), Config: json.RawMessage(tc.conf)})
		require.Error(t, err, tc.name)
		f := failureOf(err)
		require.False(t, f.Retryable, tc.name)
		require.Equal(t, KindInvalidInput, f.Kind, tc.name)
		for _, w := range tc.want {
			require.Contains(t, err.Error(), w, tc.name)
		}
	}
}

func TestTypedKeepsTheHandlersFailure(t *testing.T) {
	t.Parallel()
	_, err := Typed(charge)(context.Background(), &Request{Context: json.RawMessage(`{"order_id":"fail"}`)})
	f := failureOf(err)
	require.True(t, f.Retryable)
	require.Equal(t, "gateway down", f.Error())
}

func TestTypedNonStructInput(t *testing.T) {
	t.Parallel()
	h := Typed(func(_ context.Context, _ *Request, in map[string]any) (*chargeResult, error) {
		if len(in) == 0 {
			return nil, nil
		}
		return &chargeResult{Note: in["note"].(string)}, nil
	})
	got, err := h(context.Background(), &Request{Context: json.RawMessage(`{"a":1}`), Config: json.RawMessage(`{"note":"n"}`)})
	require.NoError(t, err, "a map has no unknown keys")
	require.Equal(t, &chargeResult{Note: "n"}, got)
}

func TestResultSchemaOnlyForTyped(t *testing.T) {
	t.Parallel()
	a, b := Typed(charge), Typed(func(context.Context, *Request, struct{}) (string, error) { return "", nil })
	s, ok, err := ResultSchema(a)
	require.NoError(t, err)
	require.True(t, ok)
	require.Contains(t, string(s), `"required":["order_id","currency","max","min"]`)
	s, ok, err = ResultSchema(b)
	require.NoError(t, err)
	require.True(t, ok, "each Typed handler is told apart")
	require.JSONEq(t, `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"string"}`, string(s))

	in, ok, err := InputSchema(a)
	require.NoError(t, err)
	require.True(t, ok)
	require.Contains(t, string(in), `"limits"`)

	s, ok, err = ResultSchema(Typed(func(context.Context, *Request, struct{}) (**chargeResult, error) { return nil, nil }))
	require.NoError(t, err)
	require.True(t, ok)
	require.Contains(t, string(s), `"type":"object"`, "a pointer result's schema is its target's: null is recorded as {}")

	_, ok, err = ResultSchema(func(context.Context, *Request) (any, error) { return nil, nil })
	require.NoError(t, err)
	require.False(t, ok)
	_, ok, _ = ResultSchema(nil)
	require.False(t, ok)
}

func TestDescribeReportsResultSchemas(t *testing.T) {
	t.Parallel()
	srv := newServer(Handlers{
		"charge":    Typed(charge),
		"plain":     func(context.Context, *Request) (any, error) { return nil, nil },
		"recursive": Typed(func(context.Context, *Request, struct{}) (schemaTree, error) { return schemaTree{}, nil }),
	}, &serveOptions{})
	client, server := goplugin.TestPluginGRPCConn(t, true, pb.PluginSet(srv))
	defer client.Close()
	defer server.Stop()
	raw, err := client.Dispense(pb.PluginName)
	require.NoError(t, err)
	c := raw.(pb.StepHandlerClient)

	desc, err := c.Describe(context.Background(), &pb.DescribeRequest{})
	require.NoError(t, err)
	require.Len(t, desc.Handlers, 3)
	want, _, err := ResultSchema(srv.handlers["charge"])
	require.NoError(t, err)
	require.Equal(t, "charge", desc.Handlers[0].Name)
	require.JSONEq(t, string(want), desc.Handlers[0].ResultSchema)
	require.Empty(t, desc.Handlers[1].ResultSchema, "a plain handler says nothing")
	require.Empty(t, desc.Handlers[2].ResultSchema, "a type without a schema: none, and the handler still serves")

	resp, err := c.Execute(context.Background(), &pb.ExecuteRequest{Handler: "charge", StepName: "charge", ContextJson: []byte(`{"order_id":"A"}`), ConfigJson: []byte(`{"x":1}`)})
	require.NoError(t, err)
	require.Equal(t, KindInvalidInput, resp.GetFailure().Kind)
	require.False(t, resp.GetFailure().Retryable)
}
