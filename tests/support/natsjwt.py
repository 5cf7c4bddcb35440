"""Minimal NATS JWT issuing for tests: operator, account and user JWTs plus ``.creds`` files.

Follows the nats-io/jwt v2 encoding: header ``{"typ":"JWT","alg":"ed25519-nkey"}``, base64url without
padding, ``signature = ed25519(issuer seed, "header.payload")``; ``jti`` is the base32 (no padding) of
the SHA-512/256 of the claims JSON with an empty ``jti`` (what the jwt library does; nats-server does
not check its value). Keys come from the ``nkeys`` package.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass(frozen=True)
class KeyPair:
    seed: bytes
    public: str

    def sign(self, data: bytes) -> bytes:
        kp = nkeys.from_seed(self.seed)
        try:
            return bytes(kp.sign(data))
        finally:
            kp.wipe()


def new_keypair(prefix: int) -> KeyPair:
    """``prefix``: nkeys.PREFIX_BYTE_OPERATOR / _ACCOUNT / _USER."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    kp = nkeys.from_seed(seed)
    try:
        return KeyPair(seed, kp.public_key.decode())
    finally:
        kp.wipe()


def _jti(claims: dict[str, Any]) -> str:
    body = json.dumps({**claims, "jti": ""}, separators=(",", ":"), sort_keys=True).encode()
    try:
        digest = hashlib.new("sha512_256", body).digest()
    except ValueError:  # an OpenSSL without SHA-512/256
        digest = hashlib.sha256(body).digest()
    return base64.b32encode(digest).decode().rstrip("=")


def encode_jwt(issuer: KeyPair, subject: str, name: str, nats: dict[str, Any]) -> str:
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": issuer.public, "name": name, "sub": subject,
                              "nats": nats}
    claims["jti"] = _jti(claims)
    head = _b64(json.dumps(HEADER, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{head}.{payload}".encode()
    return f"{head}.{payload}.{_b64(issuer.sign(signing_input))}"


def decode_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def operator_jwt(op: KeyPair, name: str = "OP") -> str:
    return encode_jwt(op, op.public, name, {"type": "operator", "version": 2})


def account_jwt(op: KeyPair, acc: KeyPair, name: str = "ACC") -> str:
    limits = {"subs": -1, "data": -1, "payload": -1, "conn": -1, "leaf": -1, "imports": -1, "exports": -1,
              "wildcards": True}
    return encode_jwt(op, acc.public, name, {"type": "account", "version": 2, "limits": limits})


def user_jwt(acc: KeyPair, user: KeyPair, name: str = "U") -> str:
    nats = {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}
    return encode_jwt(acc, user.public, name, nats)


def creds_text(jwt: str, seed: bytes) -> str:
    """A ``.creds`` file exactly as ``nsc generate creds`` writes it."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n"
        "\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n"
        "\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed.decode()}\n"
        "------END USER NKEY SEED------\n"
        "\n"
        "*************************************************************\n"
    )


def write_creds(path: Path, acc: KeyPair, name: str = "U") -> tuple[Path, KeyPair, str]:
    """A new user of ``acc``: writes its .creds to ``path``; returns (path, user key pair, user JWT)."""
    user = new_keypair(nkeys.PREFIX_BYTE_USER)
    token = user_jwt(acc, user, name)
    path.write_text(creds_text(token, user.seed))
    path.chmod(0o600)
    return path, user, token
