"""The credential fields of a leaf CONNECT (docs/nats-protocol.md sections 3.3 and 3.10).

user/password (from the remote or the URL userinfo); a token (the Go leaf sends it as both ``user``
and ``auth_token``); an nkey seed file (``nkey`` + ``sig`` over the hub's nonce); a ``.creds`` file
(``jwt`` + ``sig``). ``sig`` is base64url without padding of the Ed25519 signature of the nonce.

The files are read again on every (re)connect, so a rotated ``.creds`` file is picked up without a
restart; they are read through aiofiles (a worker thread), so a stalling SD card delays only this
link's handshake, never the event loop (and with it the clients and the systemd watchdog).
"""

from __future__ import annotations

import base64
import re
from typing import Any, Final

from edge.config.leafnodes import LeafRemote, LeafURL
from edge.errors import EdgeError

_CREDS_BLOCK: Final = re.compile(
    r"\s*(?:(?:-{3,}.*-{3,}\r?\n)([\w\-.=]+)(?:\r?\n-{3,}.*-{3,}(\r?\n|\Z)))", re.MULTILINE
)


class CredentialsError(EdgeError):
    """A credentials file is missing or malformed."""


async def _read(path: str) -> str:
    import aiofiles  # only remotes with credential files pay for it

    try:
        async with aiofiles.open(path, encoding="utf-8") as fh:
            return str(await fh.read())
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"{path}: not a text file") from None


async def read_creds(path: str) -> tuple[str, bytes]:
    """(jwt, seed) from a ``.creds`` file: the first framed block is the JWT, the second the seed."""
    blocks = [m.group(1) for m in _CREDS_BLOCK.finditer(await _read(path))]
    if len(blocks) < 2:
        raise CredentialsError(f"{path}: not a .creds file (expected a JWT block and a seed block)")
    return blocks[0], blocks[1].encode()


async def read_seed(path: str) -> bytes:
    """An nkey seed (``SU...``) from a file holding just the seed, or a framed block with it."""
    text = await _read(path)
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("S") and len(line) > 50:
            return line.encode()
    raise CredentialsError(f"{path}: no nkey seed found")


def sign_nonce(seed: bytes, nonce: str) -> tuple[str, str]:
    """(public key, signature) for ``nonce``, signed with the nkey ``seed``."""
    import nkeys

    try:
        kp = nkeys.from_seed(seed)
    except Exception as exc:  # nkeys raises its own error types (and binascii errors) for bad seeds
        raise CredentialsError(f"invalid nkey seed: {exc}") from None
    try:
        sig = kp.sign(nonce.encode())
        public = kp.public_key.decode()
    finally:
        kp.wipe()
    return public, base64.urlsafe_b64encode(sig).decode().rstrip("=")


async def connect_credentials(remote: LeafRemote, url: LeafURL, nonce: str | None) -> dict[str, Any]:
    """The CONNECT fields carrying the remote's credentials (empty without any)."""
    if remote.credentials:
        jwt, seed = await read_creds(remote.credentials)
        _, sig = sign_nonce(seed, nonce or "")
        return {"jwt": jwt, "sig": sig}
    if remote.nkey:
        public, sig = sign_nonce(await read_seed(remote.nkey), nonce or "")
        return {"nkey": public, "sig": sig}
    if remote.token:
        return {"user": remote.token, "auth_token": remote.token}
    user = remote.user or url.user
    password = remote.password if remote.user else url.password
    if user and password is None:
        return {"user": user, "auth_token": user}  # URL with only a user part = a token (docs 3.10)
    if user:
        return {"user": user, "pass": password}
    return {}
