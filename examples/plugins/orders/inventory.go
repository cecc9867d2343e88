package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/taskerd/taskerd/plugin"
)

// Reservation is the result of reserve_inventory.
type Reservation struct {
	ReservationID string            `json:"reservation_id"`
	OrderID       string            `json:"order_id"`
	Warehouse     string            `json:"warehouse"`
	Lines         []ReservationLine `json:"lines"`
	ItemCount     int64             `json:"item_count"`
}

// ReservationLine is what is held of one SKU.
type ReservationLine struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// ReserveConfig is reserve_inventory's step config.
type ReserveConfig struct {
	// Warehouse to hold the items in; default the plugin's warehouse.
	Warehouse string `json:"warehouse"`
	// CartStep is the parent whose result is the priced cart; default
	// validate_order.
	CartStep string `json:"cart_step"`
}

// ReserveInventory is orders.reserve_inventory: it holds the cart's items
// in a warehouse. An item the warehouse is short of is a retryable failure
// (kind out_of_stock) that asks for the plugin's restock_backoff: stock
// comes back, and the workflow's retry limit bounds the wait.
//
// The stock here is the catalogue's, fixed at start, so a short item stays
// short on every attempt and the step ends blocked once its attempts are
// spent; an operator can then resolve it or grant another attempt.
func (s *Service) ReserveInventory(_ context.Context, req *plugin.Request) (any, error) {
	st := s.settings.Load()
	cfg := ReserveConfig{Warehouse: st.warehouse, CartStep: "validate_order"}
	if err := stepConfig(req, &cfg); err != nil {
		return nil, err
	}
	o, err := decodeOrder(req)
	if err != nil {
		return nil, err
	}
	var cart Cart
	if err := parent(req, cfg.CartStep, &cart); err != nil {
		return nil, err
	}
	if cart.OrderID != o.OrderID || len(cart.Lines) == 0 {
		return nil, permanent(KindMissingInput, "the result of step %q is not the priced cart of order %s", cfg.CartStep, o.OrderID)
	}
	r, short := reserve(st, cfg.Warehouse, &cart)
	if len(short) > 0 {
		return nil, plugin.RetryAfter(plugin.WithKind(
			fmt.Errorf("order %s: %s short of %s", o.OrderID, cfg.Warehouse, strings.Join(short, ", ")), KindOutOfStock),
			st.restockBackoff)
	}
	plugin.Logger().Info("inventory reserved", "order_id", o.OrderID, "reservation_id", r.ReservationID, "warehouse", r.Warehouse)
	return r, nil
}

// reserve holds the cart's lines in warehouse, or lists what is short
// ("MUG (3 wanted, 1 available)").
func reserve(st *settings, warehouse string, cart *Cart) (*Reservation, []string) {
	r := &Reservation{OrderID: cart.OrderID, Warehouse: warehouse, Lines: make([]ReservationLine, 0, len(cart.Lines))}
	var short []string
	ids := []string{cart.OrderID, warehouse}
	for _, l := range cart.Lines {
		p, ok := st.catalogue[l.SKU]
		var available int64
		switch {
		case !ok:
			// Priced by an earlier catalogue (the plugin was reconfigured
			// since): the warehouse no longer stocks it.
		case p.Stock == nil:
			available = l.Quantity
		default:
			available = *p.Stock
		}
		if available < l.Quantity {
			short = append(short, fmt.Sprintf("%s (%d wanted, %d available)", l.SKU, l.Quantity, available))
			continue
		}
		r.Lines = append(r.Lines, ReservationLine{SKU: l.SKU, Quantity: l.Quantity})
		r.ItemCount += l.Quantity
		ids = append(ids, fmt.Sprintf("%s=%d", l.SKU, l.Quantity))
	}
	r.ReservationID = derivedID("rsv", ids...)
	return r, short
}
