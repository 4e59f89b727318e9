// A minimal agent that calls the OpenAI API with the official `openai` SDK
// through a STACK sidecar. It never holds the real OpenAI key: it is
// configured only by its environment, and gives the SDK the placeholder
// stk_ph_openai, which the sidecar swaps for the real secret on the way to
// api.openai.com.
//
// Environment:
//   HTTPS_PROXY          the sidecar, e.g. http://chat-bot:PASSPORT@127.0.0.1:8080
//                        (agent id and passport as user info)
//   STACK_PASSPORT       optional: the passport, sent as Proxy-Authorization:
//                        Bearer, when HTTPS_PROXY carries no user info
//   NODE_EXTRA_CA_CERTS  the CA bundle holding the sidecar's CA (stack ca export)
//   OPENAI_API_KEY       the placeholder, stk_ph_openai (the default)
//   OPENAI_BASE_URL      optional: the API base URL (default https://api.openai.com/v1)
//   OPENAI_MODEL         optional: the model (default gpt-4o-mini)
//
// It lists models and asks for one chat completion, prints one line about
// each and exits 0, or prints the error and exits 1.
//
// Install with `npm install` in this directory (openai and undici, pinned).
import OpenAI from 'openai';
import { EnvHttpProxyAgent, fetch } from 'undici';

function fail(msg) {
  console.error(`node-agent: ${msg}`);
  process.exit(1);
}

const env = process.env;
const apiKey = env.OPENAI_API_KEY || 'stk_ph_openai';
if (!apiKey.startsWith('stk_ph_')) {
  fail('OPENAI_API_KEY must be a STACK placeholder such as stk_ph_openai, not a real key');
}
if (!env.HTTPS_PROXY && !env.https_proxy) {
  fail('HTTPS_PROXY is not set: point it at the STACK sidecar');
}

// Node's fetch ignores HTTPS_PROXY, so the SDK gets undici's fetch with a
// dispatcher that reads HTTPS_PROXY and NO_PROXY. User info in HTTPS_PROXY
// becomes Proxy-Authorization: Basic on the CONNECT; STACK_PASSPORT, when
// set, is sent as Bearer instead. NODE_EXTRA_CA_CERTS is added to the roots
// every TLS connection trusts.
const passport = (env.STACK_PASSPORT || '').trim();
const dispatcher = new EnvHttpProxyAgent(passport ? { token: `Bearer ${passport}` } : {});

const client = new OpenAI({
  apiKey,
  baseURL: env.OPENAI_BASE_URL || undefined, // the SDK's default otherwise
  fetch,
  fetchOptions: { dispatcher },
  maxRetries: 0, // a refusal by the sidecar is final
  timeout: 30_000,
});

function explain(err) {
  const reason = err?.headers?.get?.('x-stack-reason');
  if (reason) {
    return `refused by the STACK sidecar (X-Stack-Reason: ${reason}): ${err.message}`;
  }
  // Connection errors (a refused CONNECT, an untrusted CA) keep the cause.
  const causes = [];
  for (let c = err?.cause; c && causes.length < 3; c = c.cause) {
    causes.push(c.message ?? String(c));
  }
  return [err?.message ?? String(err), ...causes].join(': ');
}

try {
  const models = [];
  for await (const m of client.models.list()) {
    models.push(m.id);
  }
  console.log(`models: ${models.length} (${models.join(', ')})`);

  const completion = await client.chat.completions.create({
    model: env.OPENAI_MODEL || 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Say hello in five words.' }],
    max_tokens: 20,
  });
  const text = completion.choices[0]?.message?.content ?? '';
  console.log(`chat: ${completion.model}: ${text}`);
} catch (err) {
  fail(explain(err));
} finally {
  await dispatcher.close();
}
