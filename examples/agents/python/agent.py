"""A minimal billing agent that calls the Stripe API with requests through a
STACK sidecar. It never holds the real Stripe key: it is configured only by
its environment, and sends the placeholder stk_ph_stripe, which the sidecar
swaps for the real secret on the way to api.stripe.com.

Environment:
  HTTPS_PROXY         the sidecar, e.g. http://billing-bot:PASSPORT@127.0.0.1:8080
                      (agent id and passport as user info)
  STACK_PASSPORT      optional: the passport, sent as Proxy-Authorization:
                      Bearer, when HTTPS_PROXY carries no user info
  REQUESTS_CA_BUNDLE  the CA bundle holding the sidecar's CA (stack ca export)
  STRIPE_API_KEY      the placeholder, stk_ph_stripe (the default)
  STRIPE_API_BASE     optional: the API base URL (default https://api.stripe.com)

It reads the balance and lists recent charges, prints one line about each
and exits 0, or prints the error and exits 1.
"""

import os
import sys

import requests
from requests.adapters import HTTPAdapter


class PassportAdapter(HTTPAdapter):
    """Sends the passport as Proxy-Authorization: Bearer on every CONNECT."""

    def __init__(self, passport):
        self._passport = passport
        super().__init__(max_retries=0)

    def proxy_headers(self, proxy):
        headers = super().proxy_headers(proxy)
        headers["Proxy-Authorization"] = "Bearer " + self._passport
        return headers


def fail(msg):
    print("python-agent: " + msg, file=sys.stderr)
    return 1


def call(session, method, url, **kwargs):
    resp = session.request(method, url, timeout=30, **kwargs)
    reason = resp.headers.get("X-Stack-Reason")
    if reason:
        raise RuntimeError(
            "%s %s refused by the STACK sidecar (X-Stack-Reason: %s): HTTP %d"
            % (method, url, reason, resp.status_code)
        )
    if resp.status_code != 200:
        raise RuntimeError("%s %s: HTTP %d" % (method, url, resp.status_code))
    return resp.json()


def main():
    key = os.environ.get("STRIPE_API_KEY", "stk_ph_stripe")
    if not key.startswith("stk_ph_"):
        return fail("STRIPE_API_KEY must be a STACK placeholder such as stk_ph_stripe, not a real key")
    if not (os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")):
        return fail("HTTPS_PROXY is not set: point it at the STACK sidecar")
    base = os.environ.get("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/")

    # requests reads HTTPS_PROXY (its user info becomes Proxy-Authorization:
    # Basic on the CONNECT) and REQUESTS_CA_BUNDLE from the environment.
    session = requests.Session()
    passport = os.environ.get("STACK_PASSPORT", "").strip()
    if passport:
        session.mount("https://", PassportAdapter(passport))
    session.headers["Authorization"] = "Bearer " + key

    try:
        balance = call(session, "GET", base + "/v1/balance")
        available = sum(a.get("amount", 0) for a in balance.get("available", []))
        print("balance: %d available in %d currencies" % (available, len(balance.get("available", []))))

        charges = call(session, "GET", base + "/v1/charges", params={"limit": 3})
        data = charges.get("data", [])
        print("charges: %d recent%s" % (len(data), "".join(" " + c.get("id", "?") for c in data)))
    except (requests.RequestException, RuntimeError, ValueError) as e:
        return fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
