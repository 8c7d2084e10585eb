"""Mints JWTs for tests/it/jwks.rs with an outside library (PyJWT + cryptography).

Usage: mint.py DIR CLAIMS_JSON HS_KEYS_JSON

Writes DIR/jwks.json (public RSA "rsa-1", EC P-256 "ec-1", Ed25519 "ed-1") and
DIR/jwks_rotated.json (a new RSA key "rsa-2", "ec-1" and "ed-1"; "rsa-1" removed), and prints
one JSON object of tokens by case name. HS_KEYS_JSON maps HS256 kids to their keys ("" is the
key of tokens without kid).
"""

import base64
import hashlib
import hmac
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def public_jwk(algorithm, key, kid, alg):
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk["kid"] = kid
    jwk["alg"] = alg
    jwk["use"] = "sig"
    return jwk


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header, claims, secret):
    """A token whose header and HMAC the test chooses (PyJWT refuses a PEM as HMAC secret)."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


def main():
    out_dir, claims, hs_keys = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    algs = jwt.algorithms
    rsa_jwk = public_jwk(algs.RSAAlgorithm, rsa_key, "rsa-1", "RS256")
    rsa_new_jwk = public_jwk(algs.RSAAlgorithm, rsa_new, "rsa-2", "RS256")
    ec_jwk = public_jwk(algs.ECAlgorithm, ec_key, "ec-1", "ES256")
    ed_jwk = public_jwk(algs.OKPAlgorithm, ed_key, "ed-1", "EdDSA")
    with open(f"{out_dir}/jwks.json", "w") as f:
        json.dump({"keys": [rsa_jwk, ec_jwk, ed_jwk]}, f)
    with open(f"{out_dir}/jwks_rotated.json", "w") as f:
        json.dump({"keys": [rsa_new_jwk, ec_jwk, ed_jwk]}, f)
    rsa_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def sign(key, alg, kid, **changes):
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode({**claims, **changes}, key, algorithm=alg, headers=headers)

    tokens = {
        "rs256": sign(rsa_key, "RS256", "rsa-1"),
        "es256": sign(ec_key, "ES256", "ec-1"),
        "eddsa": sign(ed_key, "EdDSA", "ed-1"),
        "rs256_new": sign(rsa_new, "RS256", "rsa-2"),
        "unknown_kid": sign(rsa_key, "RS256", "nope-9"),
        # An RS256 header naming the EC key, signed by the RSA key.
        "rs256_with_ec_kid": sign(rsa_key, "RS256", "ec-1"),
        # An ES256 header naming the Ed25519 key.
        "es256_with_ed_kid": sign(ec_key, "ES256", "ed-1"),
        # The classic confusion: HS256 keyed with the RSA public key's PEM bytes.
        "hs256_rsa_pem_kid": handmade({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims, rsa_pem),
        "hs256_rsa_pem": handmade({"alg": "HS256", "typ": "JWT"}, claims, rsa_pem),
        "none_rsa_kid": handmade({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, claims, None),
        "rs256_other_tenant": sign(rsa_key, "RS256", "rsa-1", tenant="bigcorp"),
        "rs256_bad_env": sign(rsa_key, "RS256", "rsa-1", env="Not An Env"),
        "rs256_wrong_issuer": sign(rsa_key, "RS256", "rsa-1", iss="someone-else"),
        "rs256_expired": sign(rsa_key, "RS256", "rsa-1", exp=claims["iat"] - 120, iat=claims["iat"] - 600),
    }
    for kid, key in hs_keys.items():
        name = f"hs256_{kid}" if kid else "hs256"
        tokens[name] = sign(key.encode(), "HS256", kid or None)
    print(json.dumps(tokens))


main()
