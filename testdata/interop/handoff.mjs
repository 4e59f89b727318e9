// Opens and seals STACK handoffs with jose, an independent JOSE library.
//
//   node handoff.mjs open RECIPIENT_ENC_JWK TOKEN    -> prints the verified claims
//   node handoff.mjs seal RECIPIENT_ENC_JWK SENDER_SIGN_JWK CLAIMS_FILE -> prints a token
import { readFileSync } from 'node:fs';
import * as jose from 'jose';

const jwk = (path) => JSON.parse(readFileSync(path, 'utf8'));
const [mode, ...args] = process.argv.slice(2);

if (mode === 'open') {
  const key = await jose.importJWK(jwk(args[0]), 'ECDH-ES+A256KW');
  const { plaintext } = await jose.compactDecrypt(args[1], key, {
    keyManagementAlgorithms: ['ECDH-ES+A256KW'], contentEncryptionAlgorithms: ['A256GCM'],
  });
  const { payload, protectedHeader } = await jose.compactVerify(new TextDecoder().decode(plaintext), jose.EmbeddedJWK, { algorithms: ['EdDSA'] });
  console.log(JSON.stringify({ claims: JSON.parse(new TextDecoder().decode(payload)), typ: protectedHeader.typ }));
} else {
  const recipient = await jose.importJWK(jwk(args[0]), 'ECDH-ES+A256KW');
  const senderJWK = jwk(args[1]);
  const sender = await jose.importJWK(senderJWK, 'EdDSA');
  const { d, ...pub } = senderJWK;
  const signed = await new jose.CompactSign(readFileSync(args[2]))
    .setProtectedHeader({ alg: 'EdDSA', typ: 'stack-handoff+jws', jwk: pub })
    .sign(sender);
  const token = await new jose.CompactEncrypt(new TextEncoder().encode(signed))
    .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', cty: 'JWT' })
    .encrypt(recipient);
  console.log(token);
}
