// Command orders is a taskerd step-handler plugin with the handlers of
// workflows/order_fulfillment.hcl: validate the cart, reserve inventory,
// charge the payment, create the shipment and send the confirmation. The
// warehouse, payment gateway, carriers and mail service are simulated and
// deterministic. See README.md.
package main

import "github.com/taskerd/taskerd/plugin"

func main() {
	s := New()
	plugin.Serve(plugin.Handlers{
		"validate_cart":     s.ValidateCart,
		"reserve_inventory": s.ReserveInventory,
		"charge_payment":    s.ChargePayment,
		"create_shipment":   s.CreateShipment,
		"send_confirmation": plugin.Typed(s.SendConfirmation),
	},
		plugin.WithDescriptions(map[string]string{
			"validate_cart":     "Check the order in the task context and price it from the catalogue",
			"reserve_inventory": "Hold the cart's items in a warehouse; retryable when stock is short",
			"charge_payment":    "Charge the cart's total to the order's payment token; a decline is permanent",
			"create_shipment":   "Book the reserved, paid items with a carrier; returns tracking number and label",
			"send_confirmation": "E-mail the customer that the order is confirmed",
		}),
		plugin.WithConfigure(s.Configure),
	)
}
