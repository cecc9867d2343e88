# A realistic e-commerce flow. It runs on built-in handlers so it works
# without any plugin; swap a handler for PLUGIN.HANDLER (e.g.
# "payments.charge") once a team ships the plugin.
workflow "order_fulfillment" {
  namespace   = "ecommerce"
  version     = "1.0.0"
  description = "Validate an order, reserve stock and charge in parallel, then ship and confirm"

  context_schema = {
    type     = "object"
    required = ["order_id", "customer_email", "items"]
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
    }
  }

  retry {
    limit = 3
    base  = "1s"
    max   = "30s"
  }
  timeout = "30s"

  step "validate_order" {
    description = "Check the order against the catalogue"
    handler     = "builtin.echo"
  }

  step "reserve_inventory" {
    description = "Hold the items in the warehouse"
    handler     = "builtin.noop"
    depends_on  = [step.validate_order]
    config      = { result = { reserved = true, warehouse = "eu-west" } }
  }

  step "process_payment" {
    description = "Charge the customer"
    handler     = "builtin.noop"
    depends_on  = [step.validate_order]
    config      = { result = { charged = true, currency = "EUR" } }
    retry {
      limit = 5
    }
    timeout = "10s"
  }

  step "ship_order" {
    description = "Create the shipping label"
    handler     = "builtin.noop"
    depends_on  = [step.reserve_inventory, step.process_payment]
    config      = { result = { carrier = "dhl", label = "generated" } }
  }

  step "send_confirmation" {
    description = "E-mail the customer; the order stands without it"
    handler     = "builtin.echo"
    depends_on  = [step.process_payment]
    skippable   = true
  }
}
