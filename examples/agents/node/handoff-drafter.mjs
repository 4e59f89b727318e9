// The receiving half of the handoff example: the drafter takes what was
// handed to it from its STACK sidecar, with undici. It holds no key: its
// sidecar fetches each handoff from the control plane once, decrypts it,
// checks the sender's signature and passport, validates the payload
// against its schema again, and hands it over with who sent it.
//
// Environment:
//   HTTPS_PROXY          the sidecar, e.g. http://127.0.0.1:8080
//   NODE_EXTRA_CA_CERTS  the sidecar's CA (stack ca export)
//   HANDOFF_WAIT         seconds to wait for a first handoff (default 60)
//
// It prints one line per handoff received, then its payload as JSON, and
// exits 0 once it has received at least one; a refusal prints the
// sidecar's reason and exits 1.
import { EnvHttpProxyAgent, fetch } from 'undici';

const base = 'https://handoff.stack.internal/v1/handoffs';
const dispatcher = new EnvHttpProxyAgent();

function fail(msg) {
  console.error(`handoff-drafter: ${msg}`);
  process.exit(1);
}

async function call(url) {
  const resp = await fetch(url, { dispatcher });
  const body = await resp.text();
  if (!resp.ok) {
    fail(`refused: HTTP ${resp.status}, X-Stack-Reason: ${resp.headers.get('x-stack-reason')}: ${body.trim()}`);
  }
  return JSON.parse(body);
}

if (!process.env.HTTPS_PROXY && !process.env.https_proxy) {
  fail('HTTPS_PROXY is not set: point it at the STACK sidecar');
}
const deadline = Date.now() + 1000 * Number(process.env.HANDOFF_WAIT ?? 60);
let waiting = [];
for (;;) {
  try {
    waiting = await call(base);
  } catch (err) {
    // The sidecar listens a moment after it starts.
    if (Date.now() > deadline) fail(err.cause?.message ?? err.message);
  }
  if (waiting.length > 0 || Date.now() > deadline) break;
  await new Promise((r) => setTimeout(r, 500));
}
if (waiting.length === 0) fail('no handoff arrived');
for (const w of waiting) {
  const h = await call(`${base}/${encodeURIComponent(w.id)}`);
  console.log(`handoff ${h.id} from ${h.from}, schema ${h.schema}, payload sha256 ${h.payload_sha256}`);
  console.log(JSON.stringify(h.payload));
}
