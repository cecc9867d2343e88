'use strict';
// The protobuf encoding of the StepHandler service's messages
// (proto/stephandler.proto), written out by hand: the messages are few and
// flat, and a hand-written codec spares every plugin start the parsing of
// the .proto and every call a reflective conversion. The SDK's tests check
// it against @grpc/proto-loader's reading of the same .proto.

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
  }

  // varint reads an unsigned varint: a Number when it fits 53 bits
  // exactly, a BigInt otherwise.
  varint() {
    const b = this.buf;
    let n = 0;
    let mul = 1;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= b.length) throw new Error('protobuf: truncated varint');
      const c = b[this.pos++];
      n += (c & 0x7f) * mul;
      if (c < 0x80) return n;
      mul *= 128;
    }
    // More than 49 bits: finish in BigInt.
    let big = BigInt(n);
    let shift = 49n;
    for (let i = 7; i < 10; i++) {
      if (this.pos >= b.length) throw new Error('protobuf: truncated varint');
      const c = b[this.pos++];
      big |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
      shift += 7n;
    }
    throw new Error('protobuf: varint over 10 bytes');
  }

  int64() {
    const v = this.varint();
    if (typeof v === 'bigint') return BigInt.asIntN(64, v);
    return v;
  }

  int32() {
    const v = this.varint();
    return Number(BigInt.asIntN(32, BigInt(v)));
  }

  bytes() {
    const len = Number(this.varint());
    if (this.pos + len > this.buf.length) throw new Error('protobuf: truncated field');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  string() {
    return this.bytes().toString('utf8');
  }

  skip(wire) {
    switch (wire) {
      case WIRE_VARINT: this.varint(); break;
      case WIRE_I64: this.pos += 8; break;
      case WIRE_LEN: this.bytes(); break;
      case WIRE_I32: this.pos += 4; break;
      default: throw new Error(`protobuf: unsupported wire type ${wire}`);
    }
    if (this.pos > this.buf.length) throw new Error('protobuf: truncated field');
  }

  *fields() {
    while (this.pos < this.buf.length) {
      const tag = Number(this.varint());
      yield [tag >>> 3, tag & 7];
    }
  }
}

class Writer {
  constructor() {
    this.parts = [];
  }

  raw(buf) {
    this.parts.push(buf);
  }

  varint(v) {
    const out = [];
    if (typeof v === 'bigint' || v > Number.MAX_SAFE_INTEGER || v < 0) {
      let big = BigInt.asUintN(64, BigInt(v));
      while (big >= 0x80n) {
        out.push(Number(big & 0x7fn) | 0x80);
        big >>= 7n;
      }
      out.push(Number(big));
    } else {
      let n = v;
      while (n >= 0x80) {
        out.push((n % 128) | 0x80);
        n = Math.floor(n / 128);
      }
      out.push(n);
    }
    this.parts.push(Buffer.from(out));
  }

  tag(field, wire) {
    this.varint((field << 3) | wire);
  }

  bytesField(field, buf) {
    this.tag(field, WIRE_LEN);
    this.varint(buf.length);
    this.parts.push(buf);
  }

  stringField(field, s) {
    if (s) this.bytesField(field, Buffer.from(s, 'utf8'));
  }

  finish() {
    return Buffer.concat(this.parts);
  }
}

// The wire type of each ExecuteRequest field.
const EXECUTE_WIRE = { 1: WIRE_VARINT, 2: WIRE_VARINT, 3: WIRE_LEN, 4: WIRE_LEN, 5: WIRE_VARINT, 6: WIRE_LEN, 7: WIRE_LEN, 8: WIRE_LEN, 9: WIRE_LEN, 10: WIRE_VARINT, 11: WIRE_VARINT };

/** ExecuteRequest, with the field names of the .proto. */
function decodeExecuteRequest(buf) {
  const r = new Reader(buf);
  const m = {
    task_id: 0, step_id: 0, step_name: '', handler: '', attempt: 0,
    context_json: Buffer.alloc(0), config_json: Buffer.alloc(0), parent_results_json: {},
    idempotency_key: '', deadline_unix_nano: 0, start_by_unix_nano: 0,
  };
  for (const [field, wire] of r.fields()) {
    if (EXECUTE_WIRE[field] !== wire) {
      r.skip(wire); // unknown field, or a known one of another type
      continue;
    }
    switch (field) {
      case 1: m.task_id = r.int64(); break;
      case 2: m.step_id = r.int64(); break;
      case 3: m.step_name = r.string(); break;
      case 4: m.handler = r.string(); break;
      case 5: m.attempt = r.int32(); break;
      case 6: m.context_json = r.bytes(); break;
      case 7: m.config_json = r.bytes(); break;
      case 8: {
        const e = new Reader(r.bytes());
        let key = '';
        let value = Buffer.alloc(0);
        for (const [f, w] of e.fields()) {
          if (f === 1 && w === WIRE_LEN) key = e.string();
          else if (f === 2 && w === WIRE_LEN) value = e.bytes();
          else e.skip(w);
        }
        m.parent_results_json[key] = value;
        break;
      }
      case 9: m.idempotency_key = r.string(); break;
      case 10: m.deadline_unix_nano = r.int64(); break;
      case 11: m.start_by_unix_nano = r.int64(); break;
    }
  }
  return m;
}

function encodeFailure(f) {
  const w = new Writer();
  w.stringField(1, f.message);
  if (f.retryable) {
    w.tag(2, WIRE_VARINT);
    w.varint(1);
  }
  if (f.backoff_seconds !== undefined) {
    w.tag(3, WIRE_VARINT);
    w.varint(BigInt(f.backoff_seconds));
  }
  w.stringField(4, f.kind);
  return w.finish();
}

/** ExecuteResponse from { success: { result_json } } or { failure: {...} }, and events. */
function encodeExecuteResponse(resp) {
  const w = new Writer();
  if (resp.success) {
    const s = new Writer();
    if (resp.success.result_json.length > 0) s.bytesField(1, resp.success.result_json);
    w.bytesField(1, s.finish());
  } else if (resp.failure) {
    w.bytesField(2, encodeFailure(resp.failure));
  }
  for (const ev of resp.events || []) {
    const e = new Writer();
    e.stringField(1, ev.name);
    if (ev.payload_json && ev.payload_json.length > 0) e.bytesField(2, ev.payload_json);
    w.bytesField(3, e.finish());
  }
  return w.finish();
}

/** DescribeResponse from { handlers: [{ name, description }], sdk }. */
function encodeDescribeResponse(d) {
  const w = new Writer();
  for (const h of d.handlers) {
    const hw = new Writer();
    hw.stringField(1, h.name);
    hw.stringField(2, h.description);
    w.bytesField(1, hw.finish());
  }
  w.stringField(2, d.sdk);
  return w.finish();
}

/** ConfigureRequest: { config_json }. */
function decodeConfigureRequest(buf) {
  const r = new Reader(buf);
  const m = { config_json: Buffer.alloc(0) };
  for (const [field, wire] of r.fields()) {
    if (field === 1 && wire === WIRE_LEN) m.config_json = r.bytes();
    else r.skip(wire);
  }
  return m;
}

const EMPTY = Buffer.alloc(0);
const identity = (b) => b;

function method(name, requestDeserialize, responseSerialize) {
  return {
    path: `/taskerd.plugin.v1.StepHandler/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize,
    responseSerialize,
    responseDeserialize: identity,
  };
}

/** The StepHandler service definition for grpc-js's Server.addService. */
const stepHandlerService = {
  Describe: method('Describe', () => ({}), encodeDescribeResponse),
  Configure: method('Configure', decodeConfigureRequest, () => EMPTY),
  Execute: method('Execute', decodeExecuteRequest, encodeExecuteResponse),
};

module.exports = { stepHandlerService, decodeExecuteRequest, encodeExecuteResponse, encodeDescribeResponse, decodeConfigureRequest };
