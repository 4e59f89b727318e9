// Verifies a STACK passport with the jose package, using only a JWKS file.
// Usage: node verify.mjs JWKS_FILE TOKEN
// Exit 0 and the claims on stdout when valid; exit 1 and the error when not.
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, jwtVerify } from 'jose';

const [jwksFile, token] = process.argv.slice(2);
if (!jwksFile || !token) {
  console.error('usage: node verify.mjs JWKS_FILE TOKEN');
  process.exit(2);
}
const jwks = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, 'utf8')));
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    algorithms: ['EdDSA'],
    audience: process.env.STACK_AUDIENCE || 'stack-proxy',
    typ: 'passport+jwt',
    requiredClaims: ['sub', 'jti', 'iat', 'exp'],
  });
  console.log(JSON.stringify({ header: protectedHeader, claims: payload }));
} catch (err) {
  console.error(`rejected: ${err.code || err.name}: ${err.message}`);
  process.exit(1);
}
