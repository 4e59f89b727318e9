"""Verifies a STACK passport with joserfc, using only a JWKS file.

Usage: python3 verify.py JWKS_FILE TOKEN
Exit 0 and the claims on stdout when valid; exit 1 and the error when not.
"""

import json
import os
import sys
import warnings

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: python3 verify.py JWKS_FILE TOKEN", file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        keys = KeySet.import_key_set(json.load(f))
    token = sys.argv[2]
    audience = os.environ.get("STACK_AUDIENCE", "stack-proxy")
    try:
        with warnings.catch_warnings():
            # joserfc flags "EdDSA" as deprecated by RFC 9864; it is still
            # the name every JOSE library (and go-jose) uses for Ed25519.
            warnings.simplefilter("ignore")
            tok = jwt.decode(token, keys, algorithms=["EdDSA"])
        if tok.header.get("alg") != "EdDSA" or tok.header.get("typ") != "passport+jwt":
            raise JoseError(f"unexpected header {tok.header}")
        registry = jwt.JWTClaimsRegistry(
            leeway=30,
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            jti={"essential": True},
            iat={"essential": True},
            exp={"essential": True},
        )
        registry.validate(tok.claims)
    except (JoseError, ValueError) as err:
        print(f"rejected: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"header": tok.header, "claims": tok.claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
