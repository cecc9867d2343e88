package main

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/taskerd/taskerd/plugin"
)

// GreylistDomain is a mail domain of the simulated mail service that
// greylists: it turns the first delivery away for GreylistBackoff, as real
// greylisting servers do, and accepts the next.
const (
	GreylistDomain  = "greylisted.example"
	GreylistBackoff = 60 * time.Second
)

// Notification is the result of send_confirmation.
type Notification struct {
	MessageID string `json:"message_id"`
	OrderID   string `json:"order_id"`
	// To is the recipient with most of the local part hidden.
	To        string `json:"to"`
	Template  string `json:"template"`
	Subject   string `json:"subject"`
	PaymentID string `json:"payment_id"`
}

// NotifyInput is what send_confirmation needs: plugin.Typed fills it from
// the task context (the order) and then the step config (template,
// payment_step); a config key that is not one of its fields fails the step
// (kind invalid_input).
type NotifyInput struct {
	OrderID       string `json:"order_id"`
	CustomerEmail string `json:"customer_email"`
	// Template is the e-mail to send; default order_confirmation (a
	// pointer, so that an empty one set on purpose is told from none).
	Template *string `json:"template"`
	// PaymentStep is the parent whose result is the charge; default
	// process_payment.
	PaymentStep string `json:"payment_step"`
}

// SendConfirmation is orders.send_confirmation, served as
// plugin.Typed(s.SendConfirmation): it e-mails the customer that the order
// is paid. A mail domain under .invalid bounces (permanent, kind
// undeliverable); GreylistDomain defers the first attempt (retryable,
// asking for GreylistBackoff). Its result's schema is the result_schema of
// the step in workflows/order_fulfillment.hcl.
func (s *Service) SendConfirmation(ctx context.Context, req *plugin.Request, in NotifyInput) (*Notification, error) {
	template := "order_confirmation"
	if in.Template != nil {
		template = *in.Template
	}
	if template == "" {
		return nil, permanent(KindInvalidConfig, "config of step %q: template cannot be empty", req.StepName)
	}
	paymentStep := in.PaymentStep
	if paymentStep == "" {
		paymentStep = "process_payment"
	}
	if in.OrderID == "" {
		return nil, permanent(KindInvalidCart, "the task context has no order_id")
	}
	var charge Charge
	if err := parent(req, paymentStep, &charge); err != nil {
		return nil, err
	}
	if charge.OrderID != in.OrderID || charge.Status != "captured" {
		return nil, permanent(KindNotCaptured, "order %s: the result of step %q is not a captured payment for it", in.OrderID, paymentStep)
	}
	addr, err := mail.ParseAddress(in.CustomerEmail)
	if err != nil {
		return nil, permanent(KindUndeliverable, "order %s: customer_email is not an e-mail address", in.OrderID)
	}
	to := maskEmail(addr.Address)
	if err := deliver(addr.Address, req.Attempt); err != nil {
		return nil, fmt.Errorf("order %s: e-mail to %s: %w", in.OrderID, to, err)
	}
	n := &Notification{
		MessageID: derivedID("msg", in.OrderID, template),
		OrderID:   in.OrderID,
		To:        to,
		Template:  template,
		Subject:   fmt.Sprintf("Order %s confirmed: %s", in.OrderID, charge.Amount),
		PaymentID: charge.PaymentID,
	}
	plugin.Logger().InfoContext(ctx, "confirmation sent", "order_id", in.OrderID, "message_id", n.MessageID, "to", to)
	return n, nil
}

// deliver is the simulated mail service's answer for address on the given
// attempt: nil when accepted.
func deliver(address string, attempt int) error {
	domain := strings.ToLower(address[strings.LastIndexByte(address, '@')+1:])
	switch {
	case domain == "invalid" || strings.HasSuffix(domain, ".invalid"):
		return plugin.Permanent(plugin.WithKind(fmt.Errorf("bounced: no mail server for %s", domain), KindUndeliverable))
	case domain == GreylistDomain && attempt <= 1:
		return plugin.RetryAfter(errors.New("greylisted: try again later"), GreylistBackoff)
	}
	return nil
}

// maskEmail hides all but the first character of the local part:
// "a…@example.com". Results and logs need to tell messages apart, not to
// hold the customer's address.
func maskEmail(address string) string {
	at := strings.LastIndexByte(address, '@')
	if at <= 0 {
		return "…"
	}
	_, n := utf8.DecodeRuneInString(address)
	return address[:n] + "…" + address[at:]
}
