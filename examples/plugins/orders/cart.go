package main

import (
	"context"
	"fmt"
	"net/mail"
	"strings"

	"github.com/taskerd/taskerd/plugin"
)

// MaxLineQuantity is the most of one SKU an order may hold.
const MaxLineQuantity = 99

// CartLine is one priced line of the cart.
type CartLine struct {
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	LineTotalCents int64  `json:"line_total_cents"`
}

// Cart is the result of validate_cart: the order priced from the
// catalogue. Later steps charge and reserve exactly this.
type Cart struct {
	OrderID       string     `json:"order_id"`
	Currency      string     `json:"currency"`
	Lines         []CartLine `json:"lines"`
	ItemCount     int64      `json:"item_count"`
	SubtotalCents int64      `json:"subtotal_cents"`
	ShippingCents int64      `json:"shipping_cents"`
	TotalCents    int64      `json:"total_cents"`
}

// ValidateCart is orders.validate_cart: it checks the order in the task
// context (items, e-mail, payment token, shipping address) and prices it.
// Everything wrong is reported at once, as a permanent invalid_cart
// failure: the customer has to send a new order.
func (s *Service) ValidateCart(_ context.Context, req *plugin.Request) (any, error) {
	if err := stepConfig(req, &struct{}{}); err != nil {
		return nil, err
	}
	o, err := decodeOrder(req)
	if err != nil {
		return nil, err
	}
	cart, problems := priceCart(s.settings.Load(), o)
	problems = append(problems, checkCustomer(o)...)
	if len(problems) > 0 {
		return nil, permanent(KindInvalidCart, "order %s is invalid: %s", o.OrderID, strings.Join(problems, "; "))
	}
	plugin.Logger().Info("cart validated", "order_id", o.OrderID, "lines", len(cart.Lines), "total", money(cart.Currency, cart.TotalCents))
	return cart, nil
}

// priceCart prices the order's items from the catalogue. Lines of the same
// SKU are merged, in the order they first appear. It returns every problem
// it finds.
func priceCart(st *settings, o *Order) (*Cart, []string) {
	cart := &Cart{OrderID: o.OrderID, Currency: st.currency, Lines: []CartLine{}}
	var problems []string
	if len(o.Items) == 0 {
		problems = append(problems, "it has no items")
	}
	index := map[string]int{}
	for i, it := range o.Items {
		p, ok := st.catalogue[it.SKU]
		switch {
		case it.SKU == "":
			problems = append(problems, fmt.Sprintf("item %d has no sku", i))
			continue
		case !ok:
			problems = append(problems, fmt.Sprintf("unknown sku %q", it.SKU))
			continue
		case it.Quantity < 1:
			problems = append(problems, fmt.Sprintf("quantity of %s must be at least 1, not %d", it.SKU, it.Quantity))
			continue
		case it.Quantity > MaxLineQuantity:
			// Checked per item as well as after merging, so that the sums
			// below stay far from overflowing.
			problems = append(problems, fmt.Sprintf("quantity of %s is %d, over the limit of %d", it.SKU, it.Quantity, MaxLineQuantity))
			continue
		}
		if j, seen := index[it.SKU]; seen {
			cart.Lines[j].Quantity += it.Quantity
			continue
		}
		index[it.SKU] = len(cart.Lines)
		cart.Lines = append(cart.Lines, CartLine{SKU: it.SKU, Name: p.Name, Quantity: it.Quantity, UnitPriceCents: p.PriceCents})
	}
	for i := range cart.Lines {
		l := &cart.Lines[i]
		if l.Quantity > MaxLineQuantity {
			problems = append(problems, fmt.Sprintf("quantity of %s is %d, over the limit of %d", l.SKU, l.Quantity, MaxLineQuantity))
		}
		l.LineTotalCents = l.Quantity * l.UnitPriceCents
		cart.ItemCount += l.Quantity
		cart.SubtotalCents += l.LineTotalCents
	}
	if cart.SubtotalCents < st.freeShippingFrom {
		cart.ShippingCents = st.shippingCents
	}
	cart.TotalCents = cart.SubtotalCents + cart.ShippingCents
	return cart, problems
}

// checkCustomer checks what the later steps need from the customer: an
// address to e-mail, a payment token to charge and an address to ship to.
func checkCustomer(o *Order) []string {
	var problems []string
	if a, err := mail.ParseAddress(o.CustomerEmail); err != nil || a.Address != o.CustomerEmail {
		problems = append(problems, fmt.Sprintf("customer_email %q is not an e-mail address", o.CustomerEmail))
	}
	if o.Payment == nil || o.Payment.Token == "" {
		problems = append(problems, "it has no payment.token")
	} else if err := checkToken(o.Payment.Token); err != nil {
		problems = append(problems, err.Error())
	}
	switch a := o.ShippingAddress; {
	case a == nil:
		problems = append(problems, "it has no shipping_address")
	default:
		if !isCode(a.Country, 2) {
			problems = append(problems, fmt.Sprintf("shipping_address.country %q: want an ISO 3166 code such as NL", a.Country))
		}
		if strings.TrimSpace(a.PostalCode) == "" {
			problems = append(problems, "shipping_address has no postal_code")
		}
	}
	return problems
}
