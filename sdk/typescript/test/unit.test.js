'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const sdk = require('..');

const { encodeResult, failureOf, toProto, selfSignedCert } = sdk._internal;

test('the shipped proto is plugin/proto/stephandler.proto byte for byte', () => {
  const shipped = fs.readFileSync(path.join(__dirname, '..', 'proto', 'stephandler.proto'));
  const source = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'plugin', 'proto', 'stephandler.proto'));
  assert.ok(shipped.equals(source), 'sdk/typescript/proto/stephandler.proto differs from plugin/proto/stephandler.proto: copy it again');
});

test('a plain error is retryable with no kind', () => {
  assert.deepEqual(toProto(failureOf(new Error('boom'))), { message: 'boom', retryable: true, kind: '' });
  assert.deepEqual(toProto(failureOf('just a string')), { message: 'just a string', retryable: true, kind: '' });
});

test('permanent blocks, keeps the kind, drops a backoff', () => {
  const f = sdk.permanent(sdk.retryAfter(sdk.withKind(new Error('declined'), 'payment_declined'), 5000));
  assert.deepEqual(toProto(f), { message: 'declined', retryable: false, kind: 'payment_declined' });
});

test('retryAfter rounds up to whole seconds and is retryable', () => {
  assert.deepEqual(toProto(sdk.retryAfter(sdk.permanent(new Error('x')), 1500)), { message: 'x', retryable: true, kind: '', backoff_seconds: '2' });
  assert.deepEqual(toProto(sdk.retryAfter(new Error('x'), 1000)), { message: 'x', retryable: true, kind: '', backoff_seconds: '1' });
  assert.deepEqual(toProto(sdk.retryAfter(new Error('x'), -3)), { message: 'x', retryable: true, kind: '' });
});

test('withKind keeps whether the error is retryable', () => {
  assert.equal(sdk.withKind(sdk.permanent(new Error('x')), 'k').retryable, false);
  assert.equal(sdk.withKind(new Error('x'), 'k').retryable, true);
  assert.equal(sdk.withKind(new Error('x'), 'k').kind, 'k');
});

test('a wrapping error keeps its message and the wrapped failure\'s treatment', () => {
  const inner = sdk.permanent(new Error('card expired'));
  const outer = new Error('charging order A-1: card expired', { cause: inner });
  assert.deepEqual(toProto(failureOf(outer)), { message: 'charging order A-1: card expired', retryable: false, kind: '' });
  assert.ok(sdk.retryable(inner) instanceof sdk.StepFailure);
  assert.equal(sdk.retryable(inner).retryable, true);
});

test('results: undefined and null are {}, bytes are JSON as they are', () => {
  assert.equal(encodeResult(undefined).toString(), '{}');
  assert.equal(encodeResult(null).toString(), '{}');
  assert.equal(encodeResult(Buffer.from('[1,2]')).toString(), '[1,2]');
  assert.equal(encodeResult(new Uint8Array()).toString(), '{}');
  assert.equal(encodeResult({ a: 1 }).toString(), '{"a":1}');
  assert.throws(() => encodeResult(Buffer.from('{nope')));
  assert.throws(() => encodeResult(() => 1), /not a JSON value/);
  assert.throws(() => encodeResult({ n: 1n }));
});

test('log lines are hclog JSON on one line', () => {
  const lines = [];
  const l = new sdk.Logger({}, (s) => lines.push(s)).with({ plugin_part: 'orders' });
  l.warn('line\nbreak', { n: 2, err: new Error('bad'), '@level': 'error' });
  assert.equal(lines.length, 1);
  assert.ok(lines[0].endsWith('\n'));
  assert.equal(lines[0].indexOf('\n'), lines[0].length - 1);
  const rec = JSON.parse(lines[0]);
  assert.equal(rec['@level'], 'warn');
  assert.equal(rec['@message'], 'line\nbreak');
  assert.match(rec['@timestamp'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.equal(rec.n, 2);
  assert.equal(rec.err, 'bad');
  assert.equal(rec.plugin_part, 'orders');
});

test('the AutoMTLS certificate is a CA for localhost, for servers and clients', () => {
  const { X509Certificate } = require('node:crypto');
  const c = selfSignedCert();
  const x = new X509Certificate(c.certDER);
  assert.equal(x.subjectAltName, 'DNS:localhost');
  assert.equal(x.ca, true);
  assert.ok(x.verify(x.publicKey), 'self-signed');
  assert.deepEqual(x.keyUsage.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  assert.ok(new Date(x.validFrom) <= new Date());
  assert.ok(x.checkPrivateKey(require('node:crypto').createPrivateKey(c.keyPEM)));
});

test('serve refuses handlers that are not functions', () => {
  const { PluginServer } = sdk._internal;
  assert.throws(() => new PluginServer({ handlers: { a: 'x' } }), /handler "a" is a string/);
  assert.throws(() => new PluginServer({}), /handlers/);
});

test('the hand-written codec reads and writes what proto-loader does from the .proto', () => {
  const protoLoader = require('@grpc/proto-loader');
  const wire = require('../lib/wire');
  const def = protoLoader.loadSync(path.join(__dirname, '..', 'proto', 'stephandler.proto'), { keepCase: true, longs: String, defaults: true, oneofs: true });
  const svc = def['taskerd.plugin.v1.StepHandler'];

  const deadline = 1_765_000_000_123_456_789n;
  const req = {
    task_id: '9007199254740993', step_id: '11', step_name: 'ship', handler: 'echo', attempt: 3,
    context_json: Buffer.from('{"a":1}'), config_json: Buffer.from('{"é":"ü"}'),
    parent_results_json: { validate: Buffer.from('{"ok":true}'), quote: Buffer.from('1') },
    idempotency_key: '9/ship', deadline_unix_nano: deadline.toString(),
  };
  const got = wire.decodeExecuteRequest(svc.Execute.requestSerialize(req));
  assert.equal(BigInt(got.task_id), 9007199254740993n);
  assert.equal(got.step_id, 11);
  assert.equal(got.attempt, 3);
  assert.equal(got.step_name, 'ship');
  assert.equal(got.handler, 'echo');
  assert.equal(got.idempotency_key, '9/ship');
  assert.equal(BigInt(got.deadline_unix_nano), deadline);
  assert.equal(got.context_json.toString(), '{"a":1}');
  assert.equal(got.config_json.toString(), '{"é":"ü"}');
  assert.deepEqual(Object.fromEntries(Object.entries(got.parent_results_json).map(([k, v]) => [k, v.toString()])), { validate: '{"ok":true}', quote: '1' });
  const empty = wire.decodeExecuteRequest(svc.Execute.requestSerialize({}));
  assert.equal(empty.handler, '');
  assert.equal(empty.deadline_unix_nano, 0);

  const ok = svc.Execute.responseDeserialize(wire.encodeExecuteResponse({
    success: { result_json: Buffer.from('{"x":2}') },
    events: [{ name: 'order.shipped', payload_json: Buffer.from('{"n":1}') }, { name: 'order.noted', payload_json: Buffer.alloc(0) }],
  }));
  assert.equal(ok.outcome, 'success');
  assert.equal(ok.success.result_json.toString(), '{"x":2}');
  assert.deepEqual(ok.events.map((e) => [e.name, e.payload_json.toString()]), [['order.shipped', '{"n":1}'], ['order.noted', '']]);

  const failed = svc.Execute.responseDeserialize(wire.encodeExecuteResponse({ failure: { message: 'slow', retryable: true, backoff_seconds: '30', kind: 'k' } }));
  assert.equal(failed.outcome, 'failure');
  assert.equal(failed.failure.message, 'slow');
  assert.equal(failed.failure.retryable, true);
  assert.equal(failed.failure.backoff_seconds, '30');
  assert.equal(failed.failure.kind, 'k');
  const perm = svc.Execute.responseDeserialize(wire.encodeExecuteResponse({ failure: { message: 'no', retryable: false, kind: '' } }));
  assert.equal(perm.failure.retryable, false);
  assert.equal(perm.failure._backoff_seconds, undefined, 'no backoff: the optional field is absent');

  const desc = svc.Describe.responseDeserialize(wire.encodeDescribeResponse({ handlers: [{ name: 'a', description: 'does a' }, { name: 'b', description: '' }], sdk: 'taskerd-ts/1' }));
  assert.deepEqual(desc.handlers.map((h) => [h.name, h.description]), [['a', 'does a'], ['b', '']]);
  assert.equal(desc.sdk, 'taskerd-ts/1');
  assert.equal(wire.decodeConfigureRequest(svc.Configure.requestSerialize({ config_json: Buffer.from('{"k":1}') })).config_json.toString(), '{"k":1}');
});
