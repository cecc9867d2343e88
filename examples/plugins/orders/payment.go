package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/taskerd/taskerd/plugin"
)

// Test tokens of the simulated payment gateway. Any other tok_ token is
// approved.
const (
	TokenDeclined           = "tok_declined"
	TokenInsufficientFunds  = "tok_insufficient_funds"
	TokenExpiredCard        = "tok_expired_card"
	TokenGatewayUnavailable = "tok_gateway_unavailable"
	TokenFlaky              = "tok_flaky"
)

// GatewayBackoff is the wait asked for when the gateway is unavailable.
const GatewayBackoff = 5 * time.Second

// Charge is the result of charge_payment.
type Charge struct {
	PaymentID   string `json:"payment_id"`
	Status      string `json:"status"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Amount      string `json:"amount"`
	// Token is the payment token, redacted.
	Token string `json:"token"`
}

// ChargeConfig is charge_payment's step config.
type ChargeConfig struct {
	// CartStep is the parent whose result is the priced cart; default
	// validate_order.
	CartStep string `json:"cart_step"`
}

// ChargePayment is orders.charge_payment: it charges the cart's total to
// the order's payment token. A decline is permanent (kind
// payment_declined): the same card is declined again. A gateway outage is
// retryable and asks for GatewayBackoff.
//
// The charge is keyed by the order (payment_id is derived from it), not by
// the attempt's idempotency key: a retry after a lost answer must find the
// first charge rather than charge the customer twice.
func (s *Service) ChargePayment(ctx context.Context, req *plugin.Request) (any, error) {
	cfg := ChargeConfig{CartStep: "validate_order"}
	if err := stepConfig(req, &cfg); err != nil {
		return nil, err
	}
	o, err := decodeOrder(req)
	if err != nil {
		return nil, err
	}
	if o.Payment == nil || o.Payment.Token == "" {
		return nil, permanent(KindInvalidPayment, "order %s has no payment.token", o.OrderID)
	}
	token := o.Payment.Token
	if err := checkToken(token); err != nil {
		return nil, plugin.Permanent(plugin.WithKind(err, KindInvalidPayment))
	}
	var cart Cart
	if err := parent(req, cfg.CartStep, &cart); err != nil {
		return nil, err
	}
	if cart.OrderID != o.OrderID || cart.Currency == "" || cart.TotalCents <= 0 {
		return nil, permanent(KindMissingInput, "the result of step %q is not the priced cart of order %s", cfg.CartStep, o.OrderID)
	}
	st := s.settings.Load()
	amount := money(cart.Currency, cart.TotalCents)
	if cart.TotalCents > st.maxChargeCents {
		return nil, permanent(KindPaymentDeclined, "payment of %s for order %s declined: amount_over_limit (the limit is %s)",
			amount, o.OrderID, money(cart.Currency, st.maxChargeCents))
	}
	if err := ctx.Err(); err != nil {
		return nil, err // cancelled before reaching the gateway: nothing was charged
	}
	if err := gatewayDecision(token, req.Attempt); err != nil {
		plugin.Logger().Warn("payment failed", "order_id", o.OrderID, "amount", amount, "token", redactToken(token), "error", err)
		return nil, fmt.Errorf("payment of %s for order %s: %w", amount, o.OrderID, err)
	}
	c := &Charge{
		PaymentID:   derivedID("pay", o.OrderID, cart.Currency, fmt.Sprint(cart.TotalCents)),
		Status:      "captured",
		OrderID:     o.OrderID,
		AmountCents: cart.TotalCents,
		Currency:    cart.Currency,
		Amount:      amount,
		Token:       redactToken(token),
	}
	plugin.Logger().Info("payment captured", "order_id", o.OrderID, "payment_id", c.PaymentID, "amount", amount, "token", c.Token)
	return c, nil
}

// gatewayDecision is the simulated gateway's answer for a token on the
// given attempt: nil when approved.
func gatewayDecision(token string, attempt int) error {
	declined := func(code string) error {
		return plugin.Permanent(plugin.WithKind(fmt.Errorf("declined: %s", code), KindPaymentDeclined))
	}
	unavailable := func() error {
		return plugin.RetryAfter(plugin.WithKind(errors.New("the payment gateway is unavailable"), KindGateway), GatewayBackoff)
	}
	switch token {
	case TokenDeclined:
		return declined("card_declined")
	case TokenInsufficientFunds:
		return declined("insufficient_funds")
	case TokenExpiredCard:
		return declined("expired_card")
	case TokenGatewayUnavailable:
		return unavailable()
	case TokenFlaky:
		if attempt <= 1 {
			return unavailable()
		}
	}
	return nil
}

// checkToken refuses what is not a payment token, without repeating it: a
// customer who typed a card number into the token field must not see it in
// a step error, a log line or the database.
func checkToken(token string) error {
	if looksLikeCardNumber(token) {
		return errors.New("payment.token looks like a card number: send the payment provider's token, never card data")
	}
	if !strings.HasPrefix(token, "tok_") || len(token) == len("tok_") {
		return fmt.Errorf("payment.token %s is not a payment token (want tok_…)", redactToken(token))
	}
	return nil
}

// looksLikeCardNumber reports whether s is 12 to 19 digits, perhaps with
// spaces or dashes between them.
func looksLikeCardNumber(s string) bool {
	digits := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == ' ' || r == '-':
		default:
			return false
		}
	}
	return digits >= 12 && digits <= 19
}

// redactToken keeps a token's last four characters, enough to tell tokens
// apart in a log: "…visa".
func redactToken(t string) string {
	if len(t) <= 8 {
		return "…"
	}
	return "…" + t[len(t)-4:]
}
