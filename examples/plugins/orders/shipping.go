package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/taskerd/taskerd/plugin"
)

// Carriers lists the carriers create_shipment books, each with the
// countries it delivers to (nil: everywhere).
var Carriers = map[string][]string{
	"dhl":    nil,
	"ups":    nil,
	"dpd":    nil,
	"postnl": {"BE", "NL"},
}

// ItemsPerParcel is how many items go in one parcel.
const ItemsPerParcel = 20

// Shipment is the result of create_shipment.
type Shipment struct {
	ShipmentID     string `json:"shipment_id"`
	OrderID        string `json:"order_id"`
	Carrier        string `json:"carrier"`
	Service        string `json:"service"`
	TrackingNumber string `json:"tracking_number"`
	LabelURL       string `json:"label_url"`
	Warehouse      string `json:"warehouse"`
	ReservationID  string `json:"reservation_id"`
	PaymentID      string `json:"payment_id"`
	Parcels        int64  `json:"parcels"`
	// ShipTo is the destination without the customer's name and street.
	ShipTo ShipTo `json:"ship_to"`
}

// ShipTo is the coarse destination of a shipment.
type ShipTo struct {
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// ShipConfig is create_shipment's step config.
type ShipConfig struct {
	// Carrier is one of Carriers; default dhl.
	Carrier string `json:"carrier"`
	// Service is standard or express; default standard.
	Service string `json:"service"`
	// ReservationStep and PaymentStep are the parents whose results are
	// the reservation and the charge; defaults reserve_inventory and
	// process_payment.
	ReservationStep string `json:"reservation_step"`
	PaymentStep     string `json:"payment_step"`
}

// CreateShipment is orders.create_shipment: it books the reserved items
// with a carrier once the payment is captured, and returns the tracking
// number and label. A carrier that does not deliver to the address is
// permanent (kind carrier_unavailable): change the step's carrier.
func (s *Service) CreateShipment(_ context.Context, req *plugin.Request) (any, error) {
	cfg := ShipConfig{Carrier: "dhl", Service: "standard", ReservationStep: "reserve_inventory", PaymentStep: "process_payment"}
	if err := stepConfig(req, &cfg); err != nil {
		return nil, err
	}
	countries, ok := Carriers[cfg.Carrier]
	if !ok {
		return nil, permanent(KindInvalidConfig, "config of step %q: unknown carrier %q (want one of %s)",
			req.StepName, cfg.Carrier, strings.Join(carrierNames(), ", "))
	}
	if cfg.Service != "standard" && cfg.Service != "express" {
		return nil, permanent(KindInvalidConfig, "config of step %q: service %q: want standard or express", req.StepName, cfg.Service)
	}
	o, err := decodeOrder(req)
	if err != nil {
		return nil, err
	}
	if o.ShippingAddress == nil || !isCode(o.ShippingAddress.Country, 2) {
		return nil, permanent(KindInvalidCart, "order %s has no shipping_address with a country", o.OrderID)
	}
	var (
		rsv    Reservation
		charge Charge
	)
	if err := parent(req, cfg.ReservationStep, &rsv); err != nil {
		return nil, err
	}
	if err := parent(req, cfg.PaymentStep, &charge); err != nil {
		return nil, err
	}
	if rsv.OrderID != o.OrderID || rsv.ReservationID == "" {
		return nil, permanent(KindMissingInput, "the result of step %q is not a reservation for order %s", cfg.ReservationStep, o.OrderID)
	}
	if charge.OrderID != o.OrderID || charge.Status != "captured" {
		return nil, permanent(KindNotCaptured, "order %s: the result of step %q is not a captured payment for it; nothing ships unpaid", o.OrderID, cfg.PaymentStep)
	}
	country := o.ShippingAddress.Country
	if countries != nil && !slices.Contains(countries, country) {
		return nil, permanent(KindCarrier, "order %s: %s does not deliver to %s (it delivers to %s)",
			o.OrderID, cfg.Carrier, country, strings.Join(countries, ", "))
	}
	sh := &Shipment{
		ShipmentID:     derivedID("shp", o.OrderID, cfg.Carrier, cfg.Service, rsv.ReservationID),
		OrderID:        o.OrderID,
		Carrier:        cfg.Carrier,
		Service:        cfg.Service,
		TrackingNumber: trackingNumber(cfg.Carrier, o.OrderID, rsv.ReservationID),
		Warehouse:      rsv.Warehouse,
		ReservationID:  rsv.ReservationID,
		PaymentID:      charge.PaymentID,
		Parcels:        max(1, (rsv.ItemCount+ItemsPerParcel-1)/ItemsPerParcel),
		ShipTo:         ShipTo{PostalCode: o.ShippingAddress.PostalCode, Country: country},
	}
	sh.LabelURL = "https://labels.example.com/" + sh.ShipmentID + ".pdf"
	plugin.Logger().Info("shipment booked", "order_id", o.OrderID, "shipment_id", sh.ShipmentID, "carrier", sh.Carrier)
	return sh, nil
}

// trackingNumber is the carrier's code and 12 digits derived from the
// order and the reservation.
func trackingNumber(carrier, orderID, reservationID string) string {
	n := binary.BigEndian.Uint64(digest("trk", carrier, orderID, reservationID)[:8]) % 1_000_000_000_000
	return fmt.Sprintf("%s%012d", strings.ToUpper(carrier), n)
}

func carrierNames() []string {
	names := make([]string, 0, len(Carriers))
	for n := range Carriers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
