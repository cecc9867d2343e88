// The handlers of the ts-orders example plugin, apart from serve() so that
// tests can call them directly.
// @ts-check
'use strict';

const { permanent, retryAfter, withKind, logger } = require('@taskerd/plugin');

/**
 * @typedef {{ name: string, price_cents: number, stock?: number }} Product
 * @typedef {{ currency: string, catalogue: { [sku: string]: Product }, restock_backoff_ms: number }} Config
 * @typedef {{ sku: string, quantity: number }} Item
 * @typedef {{ order_id: string, customer_email: string, items: Item[] }} Order
 */

/** @type {Config} */
let config = { currency: 'EUR', catalogue: {}, restock_backoff_ms: 30_000 };

// Reservations by idempotency key: a retried reserve step (after a crash
// or a timeout) finds its own reservation instead of taking stock twice.
/** @type {Map<string, {sku: string, quantity: number}[]>} */
const reservations = new Map();

/** @param {{ [key: string]: unknown }} raw */
function configure(raw) {
  const c = /** @type {Partial<Config>} */ (raw);
  if (c.catalogue === undefined || typeof c.catalogue !== 'object') throw new Error('config.catalogue is required: { SKU = { name, price_cents, stock } }');
  config = {
    currency: typeof c.currency === 'string' ? c.currency : 'EUR',
    catalogue: structuredClone(c.catalogue),
    restock_backoff_ms: typeof c.restock_backoff_ms === 'number' ? c.restock_backoff_ms : 30_000,
  };
  reservations.clear();
  logger.info('configured', { products: Object.keys(config.catalogue).length, currency: config.currency });
}

/** @param {import('@taskerd/plugin').Request} req */
function order(req) {
  const o = /** @type {Partial<Order>} */ (req.context);
  if (typeof o.order_id !== 'string' || !Array.isArray(o.items) || o.items.length === 0) {
    throw permanent(withKind(new Error('the task context needs order_id and at least one item'), 'invalid_order'));
  }
  return /** @type {Order} */ (o);
}

/**
 * quote prices the order from the catalogue. An unknown SKU or a bad
 * quantity is permanent: no retry fixes the order.
 * @param {import('@taskerd/plugin').Request} req
 */
function quote(req) {
  const o = order(req);
  const lines = o.items.map((it) => {
    const p = config.catalogue[it.sku];
    if (!p) throw permanent(withKind(new Error(`unknown SKU ${JSON.stringify(it.sku)}`), 'unknown_sku'));
    if (!Number.isInteger(it.quantity) || it.quantity < 1) throw permanent(withKind(new Error(`bad quantity for ${it.sku}`), 'invalid_order'));
    return { sku: it.sku, name: p.name, quantity: it.quantity, cents: p.price_cents * it.quantity };
  });
  return { order_id: o.order_id, currency: config.currency, lines, total_cents: lines.reduce((n, l) => n + l.cents, 0) };
}

/**
 * reserve takes the quoted items from stock. Short stock asks taskerd to
 * retry after the restock backoff (kind out_of_stock).
 * @param {import('@taskerd/plugin').Request} req
 */
function reserve(req) {
  const held = reservations.get(req.idempotencyKey);
  if (held) return { reserved: held, reused: true };
  const q = /** @type {{ lines: {sku: string, quantity: number}[] }} */ (req.parent('quote'));
  for (const l of q.lines) {
    const p = config.catalogue[l.sku];
    if (p && p.stock !== undefined && p.stock < l.quantity) {
      throw retryAfter(withKind(new Error(`only ${p.stock} of ${l.sku} in stock, ${l.quantity} wanted`), 'out_of_stock'), config.restock_backoff_ms);
    }
  }
  const taken = q.lines.map((l) => {
    const p = config.catalogue[l.sku];
    if (p && p.stock !== undefined) p.stock -= l.quantity;
    return { sku: l.sku, quantity: l.quantity };
  });
  reservations.set(req.idempotencyKey, taken);
  return { reserved: taken, reused: false };
}

/**
 * confirm writes the confirmation from the parents' results and emits
 * order.confirmed (declared by the step). It honours cancellation: the
 * (simulated) mail is not sent once the signal is aborted.
 * @param {import('@taskerd/plugin').Request} req
 */
async function confirm(req) {
  const o = order(req);
  const q = /** @type {{ total_cents: number, currency: string }} */ (req.parent('quote'));
  req.signal.throwIfAborted();
  const message = `Order ${o.order_id}: ${(q.total_cents / 100).toFixed(2)} ${q.currency}, reserved and on its way.`;
  req.emit('order.confirmed', { order_id: o.order_id, total_cents: q.total_cents });
  logger.info('confirmation sent', { order_id: o.order_id, to: o.customer_email, attempt: req.attempt });
  return { to: o.customer_email, message };
}

module.exports = { configure, quote, reserve, confirm };
