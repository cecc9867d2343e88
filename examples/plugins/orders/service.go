package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/taskerd/taskerd/plugin"
)

// Failure kinds, stored in the step's error next to the message.
const (
	KindInvalidCart     = "invalid_cart"
	KindInvalidConfig   = "invalid_config"
	KindMissingInput    = "missing_input"
	KindOutOfStock      = "out_of_stock"
	KindPaymentDeclined = "payment_declined"
	KindInvalidPayment  = "invalid_payment"
	KindGateway         = "payment_gateway_unavailable"
	KindNotCaptured     = "payment_not_captured"
	KindCarrier         = "carrier_unavailable"
	KindUndeliverable   = "undeliverable"
)

// Product is one catalogue entry.
type Product struct {
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	// Stock is what the warehouse holds; nil means unlimited.
	Stock *int64 `json:"stock,omitempty"`
}

// PluginConfig is the plugin's `config` in taskerd.hcl. Every key is
// optional.
type PluginConfig struct {
	// Currency of the catalogue's prices and of every charge; default EUR.
	Currency string `json:"currency"`
	// Catalogue by SKU; default DefaultCatalogue.
	Catalogue map[string]Product `json:"catalogue"`
	// Warehouse that reserve_inventory uses when its step does not name
	// one; default eu-west.
	Warehouse string `json:"warehouse"`
	// RestockBackoff is the wait reserve_inventory asks for when an item is
	// short, as a Go duration; default 30s.
	RestockBackoff string `json:"restock_backoff"`
	// ShippingCents is the delivery fee, waived from FreeShippingFromCents
	// (subtotal); defaults 495 and 5000.
	ShippingCents         *int64 `json:"shipping_cents"`
	FreeShippingFromCents *int64 `json:"free_shipping_from_cents"`
	// MaxChargeCents is the largest amount charge_payment accepts; larger
	// orders are declined. Default 250000.
	MaxChargeCents int64 `json:"max_charge_cents"`
}

// DefaultCatalogue is the catalogue when the plugin config has none, so the
// plugin runs with an empty config. POSTER is out of stock, to show the
// retryable failure of reserve_inventory.
func DefaultCatalogue() map[string]Product {
	stock := func(n int64) *int64 { return &n }
	return map[string]Product{
		"TSHIRT-M": {Name: "T-shirt, size M", PriceCents: 1999, Stock: stock(100)},
		"MUG":      {Name: "Mug", PriceCents: 1299, Stock: stock(25)},
		"STICKERS": {Name: "Sticker pack", PriceCents: 399},
		"POSTER":   {Name: "Poster", PriceCents: 899, Stock: stock(0)},
	}
}

type settings struct {
	currency         string
	catalogue        map[string]Product
	warehouse        string
	restockBackoff   time.Duration
	shippingCents    int64
	freeShippingFrom int64
	maxChargeCents   int64
}

func defaultSettings() *settings {
	return &settings{
		currency:         "EUR",
		catalogue:        DefaultCatalogue(),
		warehouse:        "eu-west",
		restockBackoff:   30 * time.Second,
		shippingCents:    495,
		freeShippingFrom: 5000,
		maxChargeCents:   250000,
	}
}

// Service holds the plugin's settings; its methods are the handlers.
type Service struct {
	settings atomic.Pointer[settings]
}

// New returns a Service with the default settings; Configure changes them.
func New() *Service {
	s := &Service{}
	s.settings.Store(defaultSettings())
	return s
}

// strictDecode decodes raw into v, refusing unknown fields: a misspelt key
// should be an error, not a silent default.
func strictDecode(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Configure applies the plugin's config (plugin.WithConfigure).
func (s *Service) Configure(_ context.Context, raw json.RawMessage) error {
	var c PluginConfig
	if err := strictDecode(raw, &c); err != nil {
		return fmt.Errorf("orders plugin config: %w", err)
	}
	st := defaultSettings()
	if c.Currency != "" {
		if !isCode(c.Currency, 3) {
			return fmt.Errorf("orders plugin config: currency %q: want an ISO 4217 code such as EUR", c.Currency)
		}
		st.currency = c.Currency
	}
	if c.Catalogue != nil {
		for sku, p := range c.Catalogue {
			if p.PriceCents <= 0 {
				return fmt.Errorf("orders plugin config: catalogue %q: price_cents must be positive", sku)
			}
			if p.Stock != nil && *p.Stock < 0 {
				return fmt.Errorf("orders plugin config: catalogue %q: stock cannot be negative", sku)
			}
		}
		st.catalogue = c.Catalogue
	}
	if c.Warehouse != "" {
		st.warehouse = c.Warehouse
	}
	if c.RestockBackoff != "" {
		d, err := time.ParseDuration(c.RestockBackoff)
		if err != nil || d <= 0 {
			return fmt.Errorf("orders plugin config: restock_backoff %q: want a positive duration such as \"30s\"", c.RestockBackoff)
		}
		st.restockBackoff = d
	}
	if c.ShippingCents != nil {
		if *c.ShippingCents < 0 {
			return fmt.Errorf("orders plugin config: shipping_cents cannot be negative")
		}
		st.shippingCents = *c.ShippingCents
	}
	if c.FreeShippingFromCents != nil {
		st.freeShippingFrom = *c.FreeShippingFromCents
	}
	if c.MaxChargeCents < 0 {
		return fmt.Errorf("orders plugin config: max_charge_cents cannot be negative")
	}
	if c.MaxChargeCents > 0 {
		st.maxChargeCents = c.MaxChargeCents
	}
	s.settings.Store(st)
	return nil
}

// Order is the task context the handlers read.
type Order struct {
	OrderID         string   `json:"order_id"`
	CustomerEmail   string   `json:"customer_email"`
	Items           []Item   `json:"items"`
	Payment         *Payment `json:"payment"`
	ShippingAddress *Address `json:"shipping_address"`
}

// Item is one line of the order as the customer sent it.
type Item struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// Payment names how the customer pays: a token from the payment provider,
// never card data.
type Payment struct {
	Token string `json:"token"`
}

// Address is where the order goes.
type Address struct {
	Name       string `json:"name,omitempty"`
	Line1      string `json:"line1,omitempty"`
	City       string `json:"city,omitempty"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// decodeOrder reads the task context. A context that does not decode is
// permanent: retrying reads the same context.
func decodeOrder(req *plugin.Request) (*Order, error) {
	var o Order
	if err := req.DecodeContext(&o); err != nil {
		return nil, permanent(KindInvalidCart, "%w", err)
	}
	if o.OrderID == "" {
		return nil, permanent(KindInvalidCart, "the task context has no order_id")
	}
	return &o, nil
}

// stepConfig decodes the step's config strictly into v.
func stepConfig(req *plugin.Request, v any) error {
	if err := strictDecode(req.Config, v); err != nil {
		return permanent(KindInvalidConfig, "config of step %q: %w", req.StepName, err)
	}
	return nil
}

// parent decodes the result of parent step `step` into v. A missing parent
// or a result without what the handler needs is permanent: the workflow or
// an operator's manual resolution is wrong, and no retry changes it.
func parent(req *plugin.Request, step string, v any) error {
	if err := req.DecodeParent(step, v); err != nil {
		return permanent(KindMissingInput, "%w", err)
	}
	return nil
}

func permanent(kind, format string, args ...any) error {
	return plugin.Permanent(plugin.WithKind(fmt.Errorf(format, args...), kind))
}

// derivedID is prefix_ and 16 hex digits of a hash of parts: the same order
// always gets the same id, so a retried step asks the downstream system for
// the same reservation, charge or shipment instead of a second one.
func derivedID(prefix string, parts ...string) string {
	return prefix + "_" + hex.EncodeToString(digest(prefix, parts...)[:8])
}

func digest(prefix string, parts ...string) []byte {
	h := sha256.New()
	h.Write([]byte(prefix))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return h.Sum(nil)
}

// money formats cents as "EUR 12.99".
func money(currency string, cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s %s%d.%02d", currency, sign, cents/100, cents%100)
}

// isCode reports whether s is n upper-case ASCII letters (ISO 4217
// currency, ISO 3166-1 alpha-2 country).
func isCode(s string, n int) bool {
	if len(s) != n {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return r < 'A' || r > 'Z' }) < 0
}
