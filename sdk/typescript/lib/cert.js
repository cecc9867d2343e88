'use strict';
// A self-signed X.509 certificate for go-plugin's AutoMTLS, written with a
// small DER encoder: Node's crypto makes and signs with keys but has no
// certificate builder, and the few fields go-plugin needs (the shape of the
// certificate go-plugin's own Go server makes) do not justify a dependency.

const crypto = require('node:crypto');

function derLength(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  while (n > 0) {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag, ...parts) {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

const seq = (...parts) => tlv(0x30, ...parts);
const set = (...parts) => tlv(0x31, ...parts);

function oid(dotted) {
  const arcs = dotted.split('.').map(Number);
  const out = [40 * arcs[0] + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const b = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) b.unshift(0x80 | (v & 0x7f));
    out.push(...b);
  }
  return tlv(0x06, Buffer.from(out));
}

function time(d) {
  const p = (n) => String(n).padStart(2, '0');
  const rest = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  const y = d.getUTCFullYear();
  // RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
  if (y < 2050) return tlv(0x17, Buffer.from(`${p(y % 100)}${rest}`, 'ascii'));
  return tlv(0x18, Buffer.from(`${y}${rest}`, 'ascii'));
}

function extension(id, critical, value) {
  const parts = [oid(id)];
  if (critical) parts.push(Buffer.from([0x01, 0x01, 0xff]));
  parts.push(tlv(0x04, value));
  return seq(...parts);
}

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

/**
 * selfSignedCert makes an ECDSA P-256 key and a certificate for
 * "localhost" signed by it, usable as both server and client certificate
 * and as its own CA (what go-plugin's AutoMTLS expects of each side).
 * @returns {{certPEM: string, certDER: Buffer, keyPEM: string}}
 */
function selfSignedCert(now = new Date()) {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const serial = crypto.randomBytes(16);
  serial[0] = (serial[0] & 0x7f) | 0x40; // positive, no leading zero byte
  const name = seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from('localhost')))));
  const notBefore = new Date(now.getTime() - 30_000);
  const notAfter = new Date(now.getTime() + 10 * 365 * 24 * 3600_000);
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([0x02]))), // v3
    tlv(0x02, serial),
    ECDSA_SHA256,
    name,
    seq(time(notBefore), time(notAfter)),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    tlv(0xa3, seq(
      extension('2.5.29.19', true, seq(Buffer.from([0x01, 0x01, 0xff]))), // CA
      // digitalSignature, keyEncipherment, keyAgreement, keyCertSign
      extension('2.5.29.15', true, tlv(0x03, Buffer.from([0x02, 0xac]))),
      extension('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))),
      extension('2.5.29.17', false, seq(tlv(0x82, Buffer.from('localhost')))),
    )),
  );
  const sig = crypto.sign('sha256', tbs, privateKey);
  const certDER = seq(tbs, ECDSA_SHA256, tlv(0x03, Buffer.from([0]), sig));
  const b64 = certDER.toString('base64').replace(/.{1,64}/g, '$&\n');
  return {
    certDER,
    certPEM: `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`,
    keyPEM: privateKey.export({ type: 'pkcs8', format: 'pem' }),
  };
}

module.exports = { selfSignedCert };
