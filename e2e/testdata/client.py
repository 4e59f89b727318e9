"""Send one request the way a Python agent would: with requests, through the
proxy named by HTTPS_PROXY (user info = agent id and passport), trusting only
the CA in REQUESTS_CA_BUNDLE, holding only the placeholder in STRIPE_API_KEY.

usage: client.py METHOD URL [FORM-BODY]

Prints one JSON object: {"status", "headers", "body"}.
"""

import json
import os
import sys

import requests


def main() -> int:
    method, url = sys.argv[1], sys.argv[2]
    body = sys.argv[3] if len(sys.argv) > 3 else None
    headers = {"Authorization": "Bearer " + os.environ["STRIPE_API_KEY"]}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    resp = requests.request(method, url, headers=headers, data=body, timeout=20)
    json.dump(
        {"status": resp.status_code, "headers": dict(resp.headers), "body": resp.text},
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
