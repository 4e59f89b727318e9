// Send one request the way a Node agent would: with undici's ProxyAgent,
// the passport in the proxy token (Basic agent-id:passport), trusting only
// the CA in STACK_CA, holding only the placeholder in STRIPE_API_KEY.
//
// usage: node client.mjs METHOD URL [FORM-BODY]
// env:   STACK_PROXY (http://host:port), STACK_AGENT, STACK_PASSPORT,
//        STACK_CA (PEM file), STRIPE_API_KEY
//
// Prints one JSON object: {"status", "headers", "body"}.
import { readFileSync } from 'node:fs';
import { ProxyAgent, request } from 'undici';

const [method, url, body] = process.argv.slice(2);
const env = process.env;
const ca = readFileSync(env.STACK_CA);
const dispatcher = new ProxyAgent({
  uri: env.STACK_PROXY,
  token: 'Basic ' + Buffer.from(`${env.STACK_AGENT}:${env.STACK_PASSPORT}`).toString('base64'),
  // The exported CA replaces the default roots: the agent trusts nothing else.
  requestTls: { ca },
});
const headers = { authorization: `Bearer ${env.STRIPE_API_KEY}` };
if (body !== undefined) {
  headers['content-type'] = 'application/x-www-form-urlencoded';
}
try {
  const res = await request(url, { method, headers, body, dispatcher });
  const text = await res.body.text();
  process.stdout.write(JSON.stringify({ status: res.statusCode, headers: res.headers, body: text }) + '\n');
} finally {
  await dispatcher.close();
}
