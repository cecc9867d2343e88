'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Request } = require('@taskerd/plugin');
const { configure, quote, reserve, confirm } = require('../handlers');

// request builds the Request a handler gets, as the SDK would.
function request({ context = {}, parents = {}, key = '1/step', attempt = 1 } = {}) {
  const events = [];
  const parentResults = Object.fromEntries(Object.entries(parents).map(([k, v]) => [k, Buffer.from(JSON.stringify(v))]));
  const req = new Request({
    task_id: '1', step_id: '2', step_name: 'step', handler: 'h', attempt, idempotency_key: key,
    context_json: Buffer.from(JSON.stringify(context)), config_json: Buffer.alloc(0), parent_results_json: parentResults,
  }, new AbortController().signal, { emit: (name, payload) => events.push({ name, payload }) });
  return { req, events };
}

const order = { order_id: 'A-1', customer_email: 'ann@example.com', items: [{ sku: 'MUG', quantity: 2 }] };

test.beforeEach(() => {
  configure({ currency: 'EUR', restock_backoff_ms: 1500, catalogue: { MUG: { name: 'Mug', price_cents: 1299, stock: 3 } } });
});

test('quote prices the order; an unknown SKU is permanent', () => {
  const q = quote(request({ context: order }).req);
  assert.equal(q.total_cents, 2598);
  assert.throws(() => quote(request({ context: { ...order, items: [{ sku: 'NOPE', quantity: 1 }] } }).req),
    (err) => err.retryable === false && err.kind === 'unknown_sku');
});

test('reserve takes stock once per idempotency key and waits for restock when short', () => {
  const q = quote(request({ context: order }).req);
  const first = reserve(request({ parents: { quote: q }, key: '1/reserve' }).req);
  assert.equal(first.reused, false);
  assert.equal(reserve(request({ parents: { quote: q }, key: '1/reserve' }).req).reused, true, 'a retry reuses its reservation');
  assert.throws(() => reserve(request({ parents: { quote: q }, key: '2/reserve' }).req),
    (err) => err.retryable === true && err.kind === 'out_of_stock' && err.backoffMs === 1500);
});

test('confirm emits order.confirmed', async () => {
  const { req, events } = request({ context: order, parents: { quote: { total_cents: 2598, currency: 'EUR' } } });
  const out = await confirm(req);
  assert.equal(out.to, 'ann@example.com');
  assert.deepEqual(events, [{ name: 'order.confirmed', payload: { order_id: 'A-1', total_cents: 2598 } }]);
});
