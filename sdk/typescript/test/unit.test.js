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
