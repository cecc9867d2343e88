# A daemon config that loads the ts-orders example plugin. From the
# repository root:
#
#   npm ci --prefix sdk/typescript
#   npm ci --prefix examples/plugins/ts-orders
#   go run ./cmd/taskerd plugins hash --write examples/plugins/ts-orders/taskerd.hcl
#   go run ./cmd/taskerd run examples/plugins/ts-orders/workflows/ts_orders.hcl \
#       --config examples/plugins/ts-orders/taskerd.hcl --context @examples/plugins/order.json
#
# A script plugin names its interpreter in command and its entry script in
# path; its sha256 covers the entry script and the package-lock.json beside
# it (docs/plugins-typescript.md). The value below is a placeholder:
# taskerd refuses the plugin and says which hash it found.

workflows = "workflows"

plugin "ts_orders" {
  command = "node"
  path    = "main.js"
  sha256  = "0000000000000000000000000000000000000000000000000000000000000000"
  config = {
    currency           = "EUR"
    restock_backoff_ms = 30000
    catalogue = {
      "TSHIRT-M" = { name = "T-shirt, size M", price_cents = 1999, stock = 100 }
      "MUG"      = { name = "Mug", price_cents = 1299, stock = 25 }
      "STICKERS" = { name = "Sticker pack", price_cents = 399 } # no stock: unlimited
      "POSTER"   = { name = "Poster", price_cents = 899, stock = 0 }
    }
  }
}
