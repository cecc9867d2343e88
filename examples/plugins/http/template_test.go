package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/plugin"
)

func templateRequest() *plugin.Request {
	return &plugin.Request{
		TaskID:         7,
		StepID:         42,
		StepName:       "notify",
		Attempt:        2,
		IdempotencyKey: "7/notify",
		Context: json.RawMessage(`{
			"order_id": "A-1",
			"amount": 12.50,
			"big": 12345678901234567890,
			"paid": true,
			"note": null,
			"items": [{"sku": "X", "quantity": 2}, {"sku": "Y", "quantity": 1}],
			"customer": {"email": "a@example.com", "tags": ["vip"]}
		}`),
		ParentResults: map[string]json.RawMessage{
			"charge": json.RawMessage(`{"payment_id": "pay_1", "amount_cents": 1250}`),
			"empty":  nil,
		},
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	cases := []struct {
		tmpl string
		want string
		err  string
	}{
		{tmpl: "no placeholders", want: "no placeholders"},
		{tmpl: "/orders/{{context.order_id}}", want: "/orders/A-1"},
		{tmpl: "{{ context.order_id }}-{{context.order_id}}", want: "A-1-A-1"},
		{tmpl: "{{context.amount}}", want: "12.50", err: ""},
		{tmpl: "{{context.big}}", want: "12345678901234567890"},
		{tmpl: "{{context.paid}}", want: "true"},
		{tmpl: "{{context.items.1.sku}}", want: "Y"},
		{tmpl: "{{context.customer.tags}}", want: `["vip"]`},
		{tmpl: "{{context.items.0}}", want: `{"quantity":2,"sku":"X"}`},
		{tmpl: "{{parents.charge.payment_id}}", want: "pay_1"},
		{tmpl: "{{parents.charge.amount_cents}}", want: "1250"},
		{tmpl: "{{step.idempotency_key}} {{step.task_id}} {{step.step_id}} {{step.name}} {{step.attempt}}", want: "7/notify 7 42 notify 2"},

		{tmpl: "{{context.customer_id}}", err: `{{context.customer_id}}: the task context has no "customer_id"`},
		{tmpl: "{{context.customer.phone}}", err: `{{context.customer.phone}}: the task context at "customer" has no "phone"`},
		{tmpl: "{{context.items.2.sku}}", err: `{{context.items.2.sku}}: the task context at "items" has 2 elements: no index 2`},
		{tmpl: "{{context.items.first}}", err: `the task context at "items" is an array: "first" is not an index`},
		{tmpl: "{{context.order_id.x}}", err: `the task context at "order_id" is a string: no "x"`},
		{tmpl: "{{context.note}}", err: "{{context.note}}: is null"},
		{tmpl: "{{context.note.x}}", err: `the task context at "note" is null: no "x"`},
		{tmpl: "{{parents.refund.id}}", err: `{{parents.refund.id}}: step "notify" has no parent "refund" (parents: charge, empty)`},
		{tmpl: "{{parents.charge.refund_id}}", err: `{{parents.charge.refund_id}}: the result of step "charge" has no "refund_id"`},
		{tmpl: "{{parents.empty.x}}", err: `the result of step "empty" is null: no "x"`},
		{tmpl: "{{parents}}", err: "name a parent step"},
		{tmpl: "{{step.secret}}", err: "unknown step field"},
		{tmpl: "{{env.HOME}}", err: "{{env.HOME}}: unknown root (want context, parents or step)"},
		{tmpl: "{{context..x}}", err: "empty path segment"},
		{tmpl: "{{}}", err: "empty path segment"},
		{tmpl: "a {{context.order_id", err: "unterminated placeholder"},
	}
	for _, tc := range cases {
		t.Run(tc.tmpl, func(t *testing.T) {
			t.Parallel()
			got, err := newScope(templateRequest()).render(tc.tmpl, nil)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestRenderJSONKeepsTypes(t *testing.T) {
	t.Parallel()
	doc, err := decodeJSON([]byte(`{
		"order": "{{context.order_id}}",
		"items": "{{context.items}}",
		"amount": "{{context.amount}}",
		"big": "{{ context.big }}",
		"note": "{{context.note}}",
		"label": "order {{context.order_id}} paid with {{parents.charge.payment_id}}",
		"fixed": [1, true, null, "{{step.attempt}}"],
		"{{context.order_id}}": "keys stay as written"
	}`))
	require.NoError(t, err)
	got, err := newScope(templateRequest()).renderJSON(doc)
	require.NoError(t, err)
	b, err := json.Marshal(got)
	require.NoError(t, err)
	require.JSONEq(t, `{
		"order": "A-1",
		"items": [{"sku": "X", "quantity": 2}, {"sku": "Y", "quantity": 1}],
		"amount": 12.50,
		"big": 12345678901234567890,
		"note": null,
		"label": "order A-1 paid with pay_1",
		"fixed": [1, true, null, 2],
		"{{context.order_id}}": "keys stay as written"
	}`, string(b))
	require.Contains(t, string(b), `"amount":12.50`, "numbers keep their exact text")
	require.Contains(t, string(b), `"big":12345678901234567890`)

	doc, err = decodeJSON([]byte(`{"a": ["{{context.missing}}"]}`))
	require.NoError(t, err)
	_, err = newScope(templateRequest()).renderJSON(doc)
	require.EqualError(t, err, `{{context.missing}}: the task context has no "missing"`)
	require.True(t, isTemplateError(err))
}
