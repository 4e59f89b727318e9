"""Opens and seals STACK handoffs with joserfc, an independent JOSE library.

  handoff.py open RECIPIENT_ENC_JWK TOKEN    -> prints the verified claims
  handoff.py seal RECIPIENT_ENC_JWK SENDER_SIGN_JWK CLAIMS_FILE -> prints a token

A handoff is a compact JWE (ECDH-ES+A256KW, A256GCM) of a compact JWS
(EdDSA) whose protected header carries the signer's public key (jwk).
"""
import json
import sys
import warnings

from joserfc import jwe, jws
from joserfc.jwk import ECKey, OKPKey

warnings.simplefilter("ignore")  # joserfc warns that EdDSA is deprecated by RFC 9864
JWE_ALGS = ["ECDH-ES+A256KW", "A256GCM"]


def load(path, cls):
    with open(path) as f:
        return cls.import_key(json.load(f))


def open_handoff(key_file, token):
    key = load(key_file, ECKey)
    obj = jwe.decrypt_compact(token, key, algorithms=JWE_ALGS)
    inner = obj.plaintext.decode()
    header = jws.extract_compact(inner.encode()).headers()
    signer = OKPKey.import_key(header["jwk"])
    verified = jws.deserialize_compact(inner, signer, algorithms=["EdDSA"])
    print(json.dumps({"claims": json.loads(verified.payload), "typ": header.get("typ")}))


def seal_handoff(recipient_file, sender_file, claims_file):
    recipient = load(recipient_file, ECKey)
    sender = load(sender_file, OKPKey)
    with open(claims_file, "rb") as f:
        claims = f.read()
    header = {"alg": "EdDSA", "typ": "stack-handoff+jws", "jwk": sender.as_dict(private=False)}
    signed = jws.serialize_compact(header, claims, sender, algorithms=["EdDSA"])
    token = jwe.encrypt_compact({"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT"}, signed, recipient, algorithms=JWE_ALGS)
    print(token)


if __name__ == "__main__":
    if sys.argv[1] == "open":
        open_handoff(sys.argv[2], sys.argv[3])
    else:
        seal_handoff(sys.argv[2], sys.argv[3], sys.argv[4])
