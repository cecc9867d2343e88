# A daemon config that loads the example plugins. From the repository root:
#
#   go build -o examples/plugins/bin/orders ./examples/plugins/orders
#   go build -o examples/plugins/bin/http   ./examples/plugins/http
#   go run ./cmd/taskerd plugins hash examples/plugins/bin/orders   # paste into sha256 below
#   go run ./cmd/taskerd plugins hash examples/plugins/bin/http
#
# The sha256 values below are placeholders: taskerd refuses to start a
# plugin whose executable does not have the configured hash, and says which
# hash it found. Plugin paths are relative to this file.

workflows = "../../workflows"

plugin "orders" {
  path   = "bin/orders"
  sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
  config = {
    currency        = "EUR"
    warehouse       = "eu-west"
    restock_backoff = "30s"
    catalogue = {
      "TSHIRT-M" = { name = "T-shirt, size M", price_cents = 1999, stock = 100 }
      "MUG"      = { name = "Mug", price_cents = 1299, stock = 25 }
      "STICKERS" = { name = "Sticker pack", price_cents = 399 } # no stock: unlimited
      "POSTER"   = { name = "Poster", price_cents = 899, stock = 0 }
    }
    shipping_cents           = 495
    free_shipping_from_cents = 5000
    max_charge_cents         = 250000
  }
}

plugin "http" {
  path   = "bin/http"
  sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
  config = {
    # base_url = "https://api.example.com/v1"
    # headers  = { Authorization = "Bearer ..." }
    timeout            = "10s"
    max_response_bytes = 1048576
  }
}
