# An order flow run by the example TypeScript plugin "ts_orders"
# (examples/plugins/ts-orders): price, reserve, confirm. Load the plugin
# from a daemon config as examples/plugins/ts-orders/taskerd.hcl does;
# examples/plugins/order.json is a context for it.
workflow "ts_order" {
  namespace   = "ecommerce"
  version     = "1.0.0"
  description = "Price an order, reserve its items, confirm it: handlers in TypeScript"

  context_schema = {
    type     = "object"
    required = ["order_id", "customer_email", "items"]
    properties = {
      order_id       = { type = "string", minLength = 1 }
      customer_email = { type = "string" }
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

  step "quote" {
    description = "Price the order from the catalogue"
    handler     = "ts_orders.quote"
  }

  step "reserve" {
    description = "Take the items from stock; waits for restock when short"
    handler     = "ts_orders.reserve"
    depends_on  = [step.quote]
  }

  step "confirm" {
    description = "Tell the customer"
    handler     = "ts_orders.confirm"
    depends_on  = [step.quote, step.reserve]
    events      = ["order.confirmed"]
  }
}
