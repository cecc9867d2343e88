# A realistic e-commerce flow, run by the example plugin "orders"
# (examples/plugins/orders): build it and load it from a daemon config, as
# examples/plugins/taskerd.hcl does; examples/plugins/order.json is a context
# for it. The plugin's README describes each handler's results and failures.
workflow "order_fulfillment" {
  namespace   = "ecommerce"
  version     = "1.0.0"
  description = "Validate an order, reserve stock and charge in parallel, then ship and confirm"

  context_schema = {
    type     = "object"
    required = ["order_id", "customer_email", "items", "payment", "shipping_address"]
    properties = {
      order_id       = { type = "string", minLength = 1 }
      customer_email = { type = "string", format = "email" }
      items = {
        type     = "array"
        minItems = 1
        items = {
          type     = "object"
          required = ["sku", "quantity"]
          properties = {
            sku      = { type = "string" }
            quantity = { type = "integer", minimum = 1 }
          }
        }
      }
      # A token from the payment provider, never card data. No pattern here:
      # a schema error repeats the value it refuses, while validate_cart
      # refuses a card number without repeating it.
      payment = {
        type     = "object"
        required = ["token"]
        properties = {
          token = { type = "string", minLength = 1 }
        }
      }
      shipping_address = {
        type     = "object"
        required = ["postal_code", "country"]
        properties = {
          name        = { type = "string" }
          line1       = { type = "string" }
          city        = { type = "string" }
          postal_code = { type = "string", minLength = 1 }
          country     = { type = "string", pattern = "^[A-Z]{2}$" }
        }
      }
    }
  }

  retry {
    limit = 3
    base  = "1s"
    max   = "30s"
  }
  timeout = "30s"

  step "validate_order" {
    description = "Check the order and price it from the catalogue"
    handler     = "orders.validate_cart"
  }

  step "reserve_inventory" {
    description = "Hold the items in the warehouse; waits for restock when short"
    handler     = "orders.reserve_inventory"
    depends_on  = [step.validate_order]
    config      = { warehouse = "eu-west" }
  }

  step "process_payment" {
    description = "Charge the customer; a decline blocks the order"
    handler     = "orders.charge_payment"
    depends_on  = [step.validate_order]
    retry {
      limit = 5
    }
    timeout = "10s"
  }

  step "ship_order" {
    description = "Book the carrier and create the shipping label"
    handler     = "orders.create_shipment"
    depends_on  = [step.reserve_inventory, step.process_payment]
    config      = { carrier = "dhl", service = "standard" }
  }

  step "send_confirmation" {
    description = "E-mail the customer; the order stands without it"
    handler     = "orders.send_confirmation"
    depends_on  = [step.process_payment]
    config      = { template = "order_confirmation" }
    skippable   = true
    # What the handler returns: plugin.ResultSchema of the Typed handler, as
    # printed by examples/plugins/orders' TestSendConfirmationResultSchemaInHCL
    # (JSON is HCL object syntax). A result that does not match fails the
    # attempt (kind invalid_result).
    result_schema = {
      "$schema": "https://json-schema.org/draft/2020-12/schema",
      "type": "object",
      "properties": {
        "message_id": {"type": "string"},
        "order_id": {"type": "string"},
        "payment_id": {"type": "string"},
        "subject": {"type": "string"},
        "template": {"type": "string"},
        "to": {"type": "string"}
      },
      "required": ["message_id", "order_id", "to", "template", "subject", "payment_id"]
    }
  }
}
