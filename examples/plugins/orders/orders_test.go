package main

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/plugin"
	"github.com/taskerd/taskerd/plugin/plugintest"
)

// orderJSON is a valid order: three MUGs (two lines, merged) and a sticker
// pack, 4296 cents, under the free-shipping threshold.
const orderJSON = `{
	"order_id": "A-1",
	"customer_email": "ann@example.com",
	"items": [{"sku": "MUG", "quantity": 2}, {"sku": "STICKERS", "quantity": 1}, {"sku": "MUG", "quantity": 1}],
	"payment": {"token": "tok_visa_4242"},
	"shipping_address": {"name": "Ann", "line1": "Dam 1", "city": "Amsterdam", "postal_code": "1012 JS", "country": "NL"}
}`

// order returns orderJSON changed by edit.
func order(t *testing.T, edit func(o map[string]any)) json.RawMessage {
	t.Helper()
	var o map[string]any
	require.NoError(t, json.Unmarshal([]byte(orderJSON), &o))
	if edit != nil {
		edit(o)
	}
	b, err := json.Marshal(o)
	require.NoError(t, err)
	return b
}

// call runs h as the SDK would: it returns the result encoded as JSON, as
// a child step would receive it.
func call(t *testing.T, h plugin.HandlerFunc, req *plugin.Request) (json.RawMessage, error) {
	t.Helper()
	if req.Attempt == 0 {
		req.Attempt = 1
	}
	if req.StepName == "" {
		req.StepName = "step"
	}
	res, err := h(context.Background(), req)
	if err != nil {
		require.Nil(t, res)
		return nil, err
	}
	b, err := json.Marshal(res)
	require.NoError(t, err)
	return b, nil
}

func failure(t *testing.T, err error) *plugin.Failure {
	t.Helper()
	require.Error(t, err)
	var f *plugin.Failure
	require.True(t, errors.As(err, &f), "want a *plugin.Failure, got %T: %v", err, err)
	return f
}

func requirePermanent(t *testing.T, err error, kind string) {
	t.Helper()
	f := failure(t, err)
	require.False(t, f.Retryable, "permanent: %v", err)
	require.Equal(t, kind, f.Kind, "%v", err)
}

func requireRetryable(t *testing.T, err error, kind string, backoff time.Duration) {
	t.Helper()
	f := failure(t, err)
	require.True(t, f.Retryable, "retryable: %v", err)
	require.Equal(t, kind, f.Kind, "%v", err)
	require.Equal(t, backoff, f.Backoff, "%v", err)
}

// fulfil runs the five handlers of order_fulfillment.hcl in order over ctx,
// feeding each step its parents' results as the engine would, and returns
// the results by step name.
func fulfil(t *testing.T, s *Service, ctx json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	results := map[string]json.RawMessage{}
	steps := []struct {
		name    string
		h       plugin.HandlerFunc
		parents []string
	}{
		{"validate_order", s.ValidateCart, nil},
		{"reserve_inventory", s.ReserveInventory, []string{"validate_order"}},
		{"process_payment", s.ChargePayment, []string{"validate_order"}},
		{"ship_order", s.CreateShipment, []string{"reserve_inventory", "process_payment"}},
		{"send_confirmation", plugin.Typed(s.SendConfirmation), []string{"process_payment"}},
	}
	for _, st := range steps {
		parents := map[string]json.RawMessage{}
		for _, p := range st.parents {
			parents[p] = results[p]
		}
		res, err := call(t, st.h, &plugin.Request{StepName: st.name, Context: ctx, ParentResults: parents})
		require.NoError(t, err, st.name)
		results[st.name] = res
	}
	return results
}

func TestFulfilment(t *testing.T) {
	t.Parallel()
	s := New()
	r := fulfil(t, s, order(t, nil))

	require.JSONEq(t, `{
		"order_id": "A-1", "currency": "EUR",
		"lines": [
			{"sku": "MUG", "name": "Mug", "quantity": 3, "unit_price_cents": 1299, "line_total_cents": 3897},
			{"sku": "STICKERS", "name": "Sticker pack", "quantity": 1, "unit_price_cents": 399, "line_total_cents": 399}
		],
		"item_count": 4, "subtotal_cents": 4296, "shipping_cents": 495, "total_cents": 4791
	}`, string(r["validate_order"]))

	var rsv Reservation
	require.NoError(t, json.Unmarshal(r["reserve_inventory"], &rsv))
	require.Regexp(t, `^rsv_[0-9a-f]{16}$`, rsv.ReservationID)
	require.Equal(t, "eu-west", rsv.Warehouse)
	require.Equal(t, []ReservationLine{{"MUG", 3}, {"STICKERS", 1}}, rsv.Lines)
	require.EqualValues(t, 4, rsv.ItemCount)

	var charge Charge
	require.NoError(t, json.Unmarshal(r["process_payment"], &charge))
	require.Regexp(t, `^pay_[0-9a-f]{16}$`, charge.PaymentID)
	require.Equal(t, Charge{PaymentID: charge.PaymentID, Status: "captured", OrderID: "A-1", AmountCents: 4791,
		Currency: "EUR", Amount: "EUR 47.91", Token: "…4242"}, charge)
	require.NotContains(t, string(r["process_payment"]), "tok_visa", "the token is redacted in the result")

	var sh Shipment
	require.NoError(t, json.Unmarshal(r["ship_order"], &sh))
	require.Regexp(t, `^shp_[0-9a-f]{16}$`, sh.ShipmentID)
	require.Regexp(t, `^DHL[0-9]{12}$`, sh.TrackingNumber)
	require.Equal(t, "https://labels.example.com/"+sh.ShipmentID+".pdf", sh.LabelURL)
	require.Equal(t, Shipment{ShipmentID: sh.ShipmentID, OrderID: "A-1", Carrier: "dhl", Service: "standard",
		TrackingNumber: sh.TrackingNumber, LabelURL: sh.LabelURL, Warehouse: "eu-west", ReservationID: rsv.ReservationID,
		PaymentID: charge.PaymentID, Parcels: 1, ShipTo: ShipTo{PostalCode: "1012 JS", Country: "NL"}}, sh)
	require.NotContains(t, string(r["ship_order"]), "Dam 1", "the street stays out of the result")

	var n Notification
	require.NoError(t, json.Unmarshal(r["send_confirmation"], &n))
	require.Regexp(t, `^msg_[0-9a-f]{16}$`, n.MessageID)
	require.Equal(t, Notification{MessageID: n.MessageID, OrderID: "A-1", To: "a…@example.com", Template: "order_confirmation",
		Subject: "Order A-1 confirmed: EUR 47.91", PaymentID: charge.PaymentID}, n)

	// The same order gives the same results: a retried step asks for the
	// same reservation, charge and shipment.
	require.Equal(t, r, fulfil(t, New(), order(t, nil)))
	// Another order gets other ids.
	other := fulfil(t, s, order(t, func(o map[string]any) { o["order_id"] = "A-2" }))
	for _, step := range []string{"reserve_inventory", "process_payment", "ship_order", "send_confirmation"} {
		require.NotEqual(t, r[step], other[step], step)
	}
}

func TestValidateCartPricing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		pluginConfig string
		items        string
		want         string // subtotal, shipping, total
	}{
		{"under the threshold", "", `[{"sku": "MUG", "quantity": 1}]`, "1299 495 1794"},
		{"at the threshold ships free", `{"free_shipping_from_cents": 2598}`, `[{"sku": "MUG", "quantity": 2}]`, "2598 0 2598"},
		{"just under the threshold", `{"free_shipping_from_cents": 2599}`, `[{"sku": "MUG", "quantity": 2}]`, "2598 495 3093"},
		{"configured fee", `{"shipping_cents": 250, "free_shipping_from_cents": 100000}`, `[{"sku": "TSHIRT-M", "quantity": 10}]`, "19990 250 20240"},
		{"configured catalogue and currency", `{"currency": "SEK", "catalogue": {"BOOK": {"name": "Book", "price_cents": 25000}}}`, `[{"sku": "BOOK", "quantity": 1}]`, "25000 0 25000"},
		{"the most of one sku", "", `[{"sku": "STICKERS", "quantity": 99}]`, "39501 0 39501"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := New()
			if tc.pluginConfig != "" {
				require.NoError(t, s.Configure(context.Background(), json.RawMessage(tc.pluginConfig)))
			}
			ctx := order(t, func(o map[string]any) { o["items"] = json.RawMessage(tc.items) })
			res, err := call(t, s.ValidateCart, &plugin.Request{Context: ctx})
			require.NoError(t, err)
			var c Cart
			require.NoError(t, json.Unmarshal(res, &c))
			require.Equal(t, tc.want, strings.Join([]string{itoa(c.SubtotalCents), itoa(c.ShippingCents), itoa(c.TotalCents)}, " "))
		})
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestValidateCartRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(o map[string]any)
		want []string
	}{
		{"no items", func(o map[string]any) { o["items"] = []any{} }, []string{"order A-1 is invalid: it has no items"}},
		{"unknown sku", func(o map[string]any) { o["items"] = json.RawMessage(`[{"sku": "NOPE", "quantity": 1}]`) }, []string{`unknown sku "NOPE"`}},
		{"no sku", func(o map[string]any) { o["items"] = json.RawMessage(`[{"quantity": 1}]`) }, []string{"item 0 has no sku"}},
		{"zero quantity", func(o map[string]any) { o["items"] = json.RawMessage(`[{"sku": "MUG", "quantity": 0}]`) }, []string{"quantity of MUG must be at least 1, not 0"}},
		{"too many after merging", func(o map[string]any) {
			o["items"] = json.RawMessage(`[{"sku": "MUG", "quantity": 50}, {"sku": "MUG", "quantity": 50}]`)
		}, []string{"quantity of MUG is 100, over the limit of 99"}},
		{"huge quantities do not overflow", func(o map[string]any) {
			o["items"] = json.RawMessage(`[{"sku": "MUG", "quantity": 9000000000000000000}, {"sku": "MUG", "quantity": 9000000000000000000}]`)
		}, []string{"quantity of MUG is 9000000000000000000, over the limit of 99"}},
		{"bad e-mail", func(o map[string]any) { o["customer_email"] = "Ann <ann@example.com>" }, []string{`customer_email "Ann <ann@example.com>" is not an e-mail address`}},
		{"no payment", func(o map[string]any) { delete(o, "payment") }, []string{"it has no payment.token"}},
		{"not a token", func(o map[string]any) { o["payment"] = map[string]any{"token": "visa-please"} }, []string{"payment.token …ease is not a payment token (want tok_…)"}},
		{"no address", func(o map[string]any) { delete(o, "shipping_address") }, []string{"it has no shipping_address"}},
		{"bad country", func(o map[string]any) {
			o["shipping_address"] = map[string]any{"country": "Holland", "postal_code": "1"}
		}, []string{`shipping_address.country "Holland"`}},
		{"no postal code", func(o map[string]any) { o["shipping_address"] = map[string]any{"country": "NL"} }, []string{"shipping_address has no postal_code"}},
		{"everything at once", func(o map[string]any) {
			o["items"] = json.RawMessage(`[{"sku": "NOPE", "quantity": 1}]`)
			delete(o, "payment")
			delete(o, "shipping_address")
		}, []string{`unknown sku "NOPE"; it has no payment.token; it has no shipping_address`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := call(t, New().ValidateCart, &plugin.Request{Context: order(t, tc.edit)})
			requirePermanent(t, err, KindInvalidCart)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}

	t.Run("a card number is refused without being repeated", func(t *testing.T) {
		t.Parallel()
		for _, pan := range []string{"4000000000000002", "4000 0000 0000 0002", "4000-0000-0000-0002"} {
			ctx := order(t, func(o map[string]any) { o["payment"] = map[string]any{"token": pan} })
			_, err := call(t, New().ValidateCart, &plugin.Request{Context: ctx})
			requirePermanent(t, err, KindInvalidCart)
			require.ErrorContains(t, err, "payment.token looks like a card number")
			require.NotContains(t, err.Error(), "0002")
		}
	})

	t.Run("no order id", func(t *testing.T) {
		t.Parallel()
		_, err := call(t, New().ValidateCart, &plugin.Request{Context: order(t, func(o map[string]any) { delete(o, "order_id") })})
		requirePermanent(t, err, KindInvalidCart)
		require.ErrorContains(t, err, "the task context has no order_id")
	})

	t.Run("unknown config key", func(t *testing.T) {
		t.Parallel()
		_, err := call(t, New().ValidateCart, &plugin.Request{StepName: "validate_order", Context: order(t, nil), Config: json.RawMessage(`{"strict": true}`)})
		requirePermanent(t, err, KindInvalidConfig)
		require.ErrorContains(t, err, `config of step "validate_order": json: unknown field "strict"`)
	})
}

// cartFor is the validate_cart result for ctx.
func cartFor(t *testing.T, s *Service, ctx json.RawMessage) json.RawMessage {
	t.Helper()
	res, err := call(t, s.ValidateCart, &plugin.Request{Context: ctx})
	require.NoError(t, err)
	return res
}

func TestReserveInventory(t *testing.T) {
	t.Parallel()
	short := order(t, func(o map[string]any) {
		o["items"] = json.RawMessage(`[{"sku": "POSTER", "quantity": 1}, {"sku": "MUG", "quantity": 26}, {"sku": "STICKERS", "quantity": 1}]`)
	})
	exact := order(t, func(o map[string]any) { o["items"] = json.RawMessage(`[{"sku": "MUG", "quantity": 25}]`) })
	cases := []struct {
		name         string
		pluginConfig string
		ctx          json.RawMessage
		config       string
		parents      func(cart json.RawMessage) map[string]json.RawMessage
		check        func(t *testing.T, res json.RawMessage, err error)
	}{
		{
			name: "short items are retryable after the restock backoff",
			ctx:  short,
			check: func(t *testing.T, _ json.RawMessage, err error) {
				requireRetryable(t, err, KindOutOfStock, 30*time.Second)
				require.EqualError(t, err, "order A-1: eu-west short of POSTER (1 wanted, 0 available), MUG (26 wanted, 25 available)")
			},
		},
		{
			name:         "configured backoff",
			pluginConfig: `{"restock_backoff": "2m"}`,
			ctx:          short,
			check: func(t *testing.T, _ json.RawMessage, err error) {
				requireRetryable(t, err, KindOutOfStock, 2*time.Minute)
			},
		},
		{
			name:   "all the stock, in the step's warehouse",
			ctx:    exact,
			config: `{"warehouse": "us-east"}`,
			check: func(t *testing.T, res json.RawMessage, err error) {
				require.NoError(t, err)
				var r Reservation
				require.NoError(t, json.Unmarshal(res, &r))
				require.Equal(t, "us-east", r.Warehouse)
				require.Equal(t, []ReservationLine{{"MUG", 25}}, r.Lines)
			},
		},
		{
			name:   "the cart from another parent",
			ctx:    exact,
			config: `{"cart_step": "price"}`,
			parents: func(cart json.RawMessage) map[string]json.RawMessage {
				return map[string]json.RawMessage{"price": cart}
			},
			check: func(t *testing.T, _ json.RawMessage, err error) { require.NoError(t, err) },
		},
		{
			name:    "no cart parent",
			ctx:     exact,
			parents: func(json.RawMessage) map[string]json.RawMessage { return map[string]json.RawMessage{} },
			check: func(t *testing.T, _ json.RawMessage, err error) {
				requirePermanent(t, err, KindMissingInput)
				require.ErrorContains(t, err, `has no parent "validate_order"`)
			},
		},
		{
			name: "a bypassed cart step",
			ctx:  exact,
			parents: func(json.RawMessage) map[string]json.RawMessage {
				return map[string]json.RawMessage{"validate_order": json.RawMessage(`{"bypassed": true}`)}
			},
			check: func(t *testing.T, _ json.RawMessage, err error) {
				requirePermanent(t, err, KindMissingInput)
				require.ErrorContains(t, err, `the result of step "validate_order" is not the priced cart of order A-1`)
			},
		},
		{
			name:   "unknown config key",
			ctx:    exact,
			config: `{"warehose": "x"}`,
			check:  func(t *testing.T, _ json.RawMessage, err error) { requirePermanent(t, err, KindInvalidConfig) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := New()
			if tc.pluginConfig != "" {
				require.NoError(t, s.Configure(context.Background(), json.RawMessage(tc.pluginConfig)))
			}
			cart := cartFor(t, s, tc.ctx)
			parents := map[string]json.RawMessage{"validate_order": cart}
			if tc.parents != nil {
				parents = tc.parents(cart)
			}
			res, err := call(t, s.ReserveInventory, &plugin.Request{StepName: "reserve_inventory", Context: tc.ctx,
				Config: json.RawMessage(tc.config), ParentResults: parents})
			tc.check(t, res, err)
		})
	}
}

func TestChargePayment(t *testing.T) {
	t.Parallel()
	withToken := func(tok string) json.RawMessage {
		return order(t, func(o map[string]any) { o["payment"] = map[string]any{"token": tok} })
	}
	cases := []struct {
		name    string
		ctx     json.RawMessage
		attempt int
		kind    string
		perm    bool
		backoff time.Duration
		msg     string
	}{
		{name: "declined", ctx: withToken(TokenDeclined), kind: KindPaymentDeclined, perm: true,
			msg: "payment of EUR 47.91 for order A-1: declined: card_declined"},
		{name: "insufficient funds", ctx: withToken(TokenInsufficientFunds), kind: KindPaymentDeclined, perm: true, msg: "declined: insufficient_funds"},
		{name: "expired card", ctx: withToken(TokenExpiredCard), kind: KindPaymentDeclined, perm: true, msg: "declined: expired_card"},
		{name: "declined on a retry too", ctx: withToken(TokenDeclined), attempt: 3, kind: KindPaymentDeclined, perm: true},
		{name: "gateway down", ctx: withToken(TokenGatewayUnavailable), kind: KindGateway, backoff: GatewayBackoff,
			msg: "payment of EUR 47.91 for order A-1: the payment gateway is unavailable"},
		{name: "gateway still down", ctx: withToken(TokenGatewayUnavailable), attempt: 4, kind: KindGateway, backoff: GatewayBackoff},
		{name: "flaky, first attempt", ctx: withToken(TokenFlaky), attempt: 1, kind: KindGateway, backoff: GatewayBackoff},
		{name: "flaky, second attempt", ctx: withToken(TokenFlaky), attempt: 2},
		{name: "another token", ctx: withToken("tok_mastercard")},
		{name: "card number", ctx: withToken("4000 0000 0000 0002"), kind: KindInvalidPayment, perm: true, msg: "looks like a card number"},
		{name: "no token", ctx: order(t, func(o map[string]any) { delete(o, "payment") }), kind: KindInvalidPayment, perm: true,
			msg: "order A-1 has no payment.token"},
		{name: "over the limit", ctx: order(t, func(o map[string]any) {
			o["items"] = json.RawMessage(`[{"sku": "TSHIRT-M", "quantity": 99}, {"sku": "MUG", "quantity": 99}, {"sku": "STICKERS", "quantity": 99}]`)
		}), kind: KindPaymentDeclined, perm: true, msg: "payment of EUR 3660.03 for order A-1 declined: amount_over_limit (the limit is EUR 2500.00)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := New()
			// Price the cart with a valid token: validate_cart would refuse
			// the card number before charge_payment ever ran.
			cart := cartFor(t, s, order(t, func(o map[string]any) { o["items"] = json.RawMessage(mustItems(t, tc.ctx)) }))
			res, err := call(t, s.ChargePayment, &plugin.Request{StepName: "process_payment", Context: tc.ctx, Attempt: tc.attempt,
				ParentResults: map[string]json.RawMessage{"validate_order": cart}})
			if tc.kind == "" {
				require.NoError(t, err)
				require.Contains(t, string(res), `"status":"captured"`)
				return
			}
			if tc.perm {
				requirePermanent(t, err, tc.kind)
			} else {
				requireRetryable(t, err, tc.kind, tc.backoff)
			}
			require.ErrorContains(t, err, tc.msg)
			require.NotContains(t, err.Error(), "tok_", "the token stays out of messages")
			require.NotContains(t, err.Error(), "0002")
		})
	}

	t.Run("cancelled before the gateway", func(t *testing.T) {
		t.Parallel()
		s := New()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := s.ChargePayment(ctx, &plugin.Request{StepName: "process_payment", Attempt: 1, Context: order(t, nil),
			ParentResults: map[string]json.RawMessage{"validate_order": cartFor(t, s, order(t, nil))}})
		require.ErrorIs(t, err, context.Canceled)
	})
}

func mustItems(t *testing.T, ctx json.RawMessage) string {
	t.Helper()
	var o struct{ Items json.RawMessage }
	require.NoError(t, json.Unmarshal(ctx, &o))
	return string(o.Items)
}

func TestCreateShipment(t *testing.T) {
	t.Parallel()
	s := New()
	good := fulfil(t, s, order(t, nil))
	parents := func(edit func(p map[string]json.RawMessage)) map[string]json.RawMessage {
		p := map[string]json.RawMessage{"reserve_inventory": good["reserve_inventory"], "process_payment": good["process_payment"]}
		if edit != nil {
			edit(p)
		}
		return p
	}
	cases := []struct {
		name    string
		ctx     json.RawMessage
		config  string
		parents map[string]json.RawMessage
		kind    string
		msg     string
		check   func(t *testing.T, sh Shipment)
	}{
		{name: "express with ups", config: `{"carrier": "ups", "service": "express"}`, check: func(t *testing.T, sh Shipment) {
			require.Regexp(t, `^UPS[0-9]{12}$`, sh.TrackingNumber)
			require.Equal(t, "express", sh.Service)
		}},
		{name: "postnl to NL", config: `{"carrier": "postnl"}`},
		{name: "postnl to DE", config: `{"carrier": "postnl"}`,
			ctx: order(t, func(o map[string]any) {
				o["shipping_address"] = map[string]any{"country": "DE", "postal_code": "10115"}
			}),
			kind: KindCarrier, msg: "order A-1: postnl does not deliver to DE (it delivers to BE, NL)"},
		{name: "unknown carrier", config: `{"carrier": "pigeon"}`, kind: KindInvalidConfig,
			msg: `config of step "ship_order": unknown carrier "pigeon" (want one of dhl, dpd, postnl, ups)`},
		{name: "unknown service", config: `{"service": "overnight"}`, kind: KindInvalidConfig, msg: `service "overnight": want standard or express`},
		{name: "payment resolved by hand", parents: parents(func(p map[string]json.RawMessage) {
			p["process_payment"] = json.RawMessage(`{"bypassed": true}`)
		}), kind: KindNotCaptured, msg: "nothing ships unpaid"},
		{name: "no reservation parent", parents: parents(func(p map[string]json.RawMessage) { delete(p, "reserve_inventory") }),
			kind: KindMissingInput, msg: `has no parent "reserve_inventory"`},
		{name: "another order's reservation", ctx: order(t, func(o map[string]any) { o["order_id"] = "A-9" }),
			kind: KindMissingInput, msg: `the result of step "reserve_inventory" is not a reservation for order A-9`},
		{name: "parcels", parents: parents(func(p map[string]json.RawMessage) {
			p["reserve_inventory"] = json.RawMessage(`{"reservation_id": "rsv_1", "order_id": "A-1", "warehouse": "w", "item_count": 41}`)
		}), check: func(t *testing.T, sh Shipment) { require.EqualValues(t, 3, sh.Parcels) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, ps := tc.ctx, tc.parents
			if ctx == nil {
				ctx = order(t, nil)
			}
			if ps == nil {
				ps = parents(nil)
			}
			res, err := call(t, s.CreateShipment, &plugin.Request{StepName: "ship_order", Context: ctx, Config: json.RawMessage(tc.config), ParentResults: ps})
			if tc.kind != "" {
				requirePermanent(t, err, tc.kind)
				require.ErrorContains(t, err, tc.msg)
				return
			}
			require.NoError(t, err)
			var sh Shipment
			require.NoError(t, json.Unmarshal(res, &sh))
			if tc.check != nil {
				tc.check(t, sh)
			}
		})
	}
}

// TestSendConfirmation runs the Typed handler with plugintest, as taskerd
// would through the plugin: input decoding, failure classification and
// logs included.
func TestSendConfirmation(t *testing.T) {
	t.Parallel()
	s := New()
	h := plugin.Typed(s.SendConfirmation)
	charge := fulfil(t, s, order(t, nil))["process_payment"]
	withEmail := func(e string) json.RawMessage {
		return order(t, func(o map[string]any) { o["customer_email"] = e })
	}
	cases := []struct {
		name    string
		ctx     json.RawMessage
		attempt int
		config  any
		check   func(t *testing.T, out *plugintest.Outcome)
	}{
		{name: "sent", check: func(t *testing.T, out *plugintest.Outcome) {
			n := plugintest.Decode[Notification](t, out)
			require.Equal(t, Notification{
				MessageID: derivedID("msg", "A-1", "order_confirmation"), OrderID: "A-1", To: "a…@example.com",
				Template: "order_confirmation", Subject: "Order A-1 confirmed: EUR 47.91", PaymentID: n.PaymentID,
			}, n)
			require.Regexp(t, `^pay_[0-9a-f]{16}$`, n.PaymentID)
			require.Len(t, out.Logs, 1)
			require.Equal(t, "confirmation sent", out.Logs[0].Message)
			require.Equal(t, n.MessageID, out.Logs[0].Attrs["message_id"])
		}},
		{name: "bounce", ctx: withEmail("bob@shop.invalid"), check: func(t *testing.T, out *plugintest.Outcome) {
			require.Equal(t, &plugintest.Failure{Message: "order A-1: e-mail to b…@shop.invalid: bounced: no mail server for shop.invalid",
				Kind: KindUndeliverable}, out.Failure)
		}},
		{name: "greylisted first", ctx: withEmail("Carol@Greylisted.example"), attempt: 1, check: func(t *testing.T, out *plugintest.Outcome) {
			require.Equal(t, &plugintest.Failure{Message: "order A-1: e-mail to C…@Greylisted.example: greylisted: try again later",
				Retryable: true, Backoff: GreylistBackoff, Kind: "handler_error"}, out.Failure)
		}},
		{name: "greylisted then accepted", ctx: withEmail("carol@greylisted.example"), attempt: 2, check: func(t *testing.T, out *plugintest.Outcome) {
			require.Equal(t, "c…@greylisted.example", plugintest.Decode[Notification](t, out).To)
		}},
		{name: "another template", config: map[string]any{"template": "order_paid"}, check: func(t *testing.T, out *plugintest.Outcome) {
			n := plugintest.Decode[Notification](t, out)
			require.Equal(t, "order_paid", n.Template)
			require.Equal(t, derivedID("msg", "A-1", "order_paid"), n.MessageID)
		}},
		{name: "empty template", config: map[string]any{"template": ""}, check: func(t *testing.T, out *plugintest.Outcome) {
			require.Equal(t, KindInvalidConfig, out.Failure.Kind)
			require.False(t, out.Failure.Retryable)
		}},
		{name: "unknown config key", config: map[string]any{"templat": "x"}, check: func(t *testing.T, out *plugintest.Outcome) {
			require.Equal(t, plugin.KindInvalidInput, out.Failure.Kind)
			require.False(t, out.Failure.Retryable)
			require.Contains(t, out.Failure.Message, `unknown field "templat"`)
		}},
		{name: "no order", ctx: json.RawMessage(`{"customer_email": "a@example.com"}`), check: func(t *testing.T, out *plugintest.Outcome) {
			require.Equal(t, KindInvalidCart, out.Failure.Kind)
		}},
		{name: "multi-byte first letter", ctx: withEmail("émile@example.com"), check: func(t *testing.T, out *plugintest.Outcome) {
			require.Equal(t, "é…@example.com", plugintest.Decode[Notification](t, out).To)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := tc.ctx
			if ctx == nil {
				ctx = order(t, nil)
			}
			tc.check(t, plugintest.Call(t, h, plugintest.Request{
				StepName: "send_confirmation", Context: ctx, Attempt: tc.attempt, Config: tc.config,
				Parents: map[string]any{"process_payment": charge},
			}))
		})
	}
}

// The result_schema that workflows/order_fulfillment.hcl declares for
// send_confirmation is the schema of what the handler returns: the test
// that keeps the HCL in step with the Go type.
func TestSendConfirmationResultSchemaInHCL(t *testing.T) {
	t.Parallel()
	want, ok, err := plugin.ResultSchema(plugin.Typed(New().SendConfirmation))
	require.NoError(t, err)
	require.True(t, ok)
	ws, _, diags := definition.Load("../../../workflows/order_fulfillment.hcl")
	require.False(t, diags.HasErrors(), diags.Error())
	require.Len(t, ws, 1)
	step := ws[0].Step("send_confirmation")
	require.NotNil(t, step)
	require.JSONEq(t, string(want), string(step.ResultSchema),
		"paste the schema printed below into the step's result_schema:\n%s", want)
}

func TestConfigure(t *testing.T) {
	t.Parallel()
	cases := []struct{ config, err string }{
		{`{"currency": "euro"}`, `currency "euro": want an ISO 4217 code`},
		{`{"catalogue": {"X": {"name": "x"}}}`, `catalogue "X": price_cents must be positive`},
		{`{"catalogue": {"X": {"price_cents": 1, "stock": -1}}}`, `catalogue "X": stock cannot be negative`},
		{`{"restock_backoff": "later"}`, `restock_backoff "later"`},
		{`{"shipping_cents": -1}`, "shipping_cents cannot be negative"},
		{`{"max_charge_cents": -1}`, "max_charge_cents cannot be negative"},
		{`{"warehouse": "w", "catalog": {}}`, `unknown field "catalog"`},
	}
	for _, tc := range cases {
		require.ErrorContains(t, New().Configure(context.Background(), json.RawMessage(tc.config)), tc.err, tc.config)
	}
	s := New()
	require.NoError(t, s.Configure(context.Background(), json.RawMessage(`{}`)))
	require.Equal(t, defaultSettings(), s.settings.Load(), "an empty config keeps the defaults")

	require.NoError(t, s.Configure(context.Background(), json.RawMessage(`{"catalogue": {"B": {"price_cents": 5}}, "warehouse": "w"}`)))
	st := s.settings.Load()
	require.Equal(t, []string{"B"}, keys(st.catalogue), "a configured catalogue replaces the default one")
	require.Equal(t, "w", st.warehouse)
}

func keys(m map[string]Product) []string {
	var out []string
	for k := range maps.Keys(m) {
		out = append(out, k)
	}
	return out
}

func TestRedaction(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"tok_visa_4242":  "…4242",
		"tok_visa":       "…",
		"":               "…",
		"tok_mastercard": "…card",
	}
	for in, want := range cases {
		require.Equal(t, want, redactToken(in), in)
	}
	require.Equal(t, "a…@example.com", maskEmail("ann@example.com"))
	require.Equal(t, "…", maskEmail("@example.com"))
	for _, s := range []string{"4242424242424242", "4242 4242 4242 4242", "378282246310005", "4242-4242-4242-4242-424"} {
		require.True(t, looksLikeCardNumber(s), s)
	}
	for _, s := range []string{"tok_4242424242424242", "12345678901", "42424242424242424242", "4242 4242 abcd 4242"} {
		require.False(t, looksLikeCardNumber(s), s)
	}
}
