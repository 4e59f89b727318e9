"""The sending half of the handoff example: a scraper hands its findings to
the drafter agent through its STACK sidecar, with nothing but the Python
standard library. It holds no key: its sidecar checks its passport's
handoff grant, validates the payload against the findings/v1 schema, signs
it with the agent's key, encrypts it to the drafter's and deposits it with
the control plane.

Environment:
  HTTPS_PROXY     the sidecar, e.g. http://127.0.0.1:8080
  SSL_CERT_FILE   the sidecar's CA (stack ca export)
  HANDOFF_TO      the recipient agent (default drafter)
  HANDOFF_SCHEMA  the payload's schema (default findings/v1)
  HANDOFF_TTL     how long it waits for the drafter (default 1h)

  python3 handoff_scraper.py [PAYLOAD.json]

sends the payload in the file, or a built-in one, prints the handoff's id
and exits 0; a refusal prints the sidecar's reason and exits 1.
"""

import json
import os
import sys
import urllib.error
import urllib.request

ENDPOINT = "https://handoff.stack.internal/v1/handoffs"

FINDINGS = {
    "topic": "rate limits of public LLM APIs",
    "findings": [
        {
            "title": "Requests per minute are set per organization",
            "url": "https://example.com/docs/rate-limits",
            "summary": "Limits apply per organization and model; headers report what is left.",
        },
        {
            "title": "Retry with exponential backoff on 429",
            "url": "https://example.com/docs/errors#429",
        },
    ],
}


def main():
    if not (os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")):
        print("handoff-scraper: HTTPS_PROXY is not set: point it at the STACK sidecar", file=sys.stderr)
        return 1
    payload = FINDINGS
    if len(sys.argv) > 1:
        with open(sys.argv[1], encoding="utf-8") as f:
            payload = json.load(f)
    body = json.dumps({
        "to": os.environ.get("HANDOFF_TO", "drafter"),
        "schema": os.environ.get("HANDOFF_SCHEMA", "findings/v1"),
        "ttl": os.environ.get("HANDOFF_TTL", "1h"),
        "payload": payload,
    }).encode()
    req = urllib.request.Request(ENDPOINT, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            sent = json.load(resp)
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace").strip()
        print(f"handoff-scraper: refused: HTTP {err.code}, "
              f"X-Stack-Reason: {err.headers.get('X-Stack-Reason')}: {detail}", file=sys.stderr)
        return 1
    except urllib.error.URLError as err:
        print(f"handoff-scraper: {err.reason}", file=sys.stderr)
        return 1
    print(f"handoff {sent['id']} to {sent['to']}, schema {sent['schema']}, "
          f"payload sha256 {sent['payload_sha256']}, expires {sent['expires']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
