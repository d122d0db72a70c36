"""Homeward's secrets and what it does with them.

Three keys, each from its own environment variable (``CommonSettings``):

* ``HOMEWARD_PATIENT_REF_KEY``: the keyed hash that turns an NHS number into the
  pseudonymous patient reference every event carries (:mod:`homeward.kit.pseudonym`). Every
  service holds it. ``HOMEWARD_PATIENT_REF_KEY_PREVIOUS`` is the key it replaces during a
  rotation.
* ``HOMEWARD_NHS_NUMBER_KEY``: encrypts the NHS numbers placements keeps (AES-256-GCM,
  :class:`NhsNumberCipher`). Only the services that store NHS numbers need it, so a leak of
  the patient reference key (held by every service) does not expose them.
  ``HOMEWARD_NHS_NUMBER_KEY_PREVIOUS`` reads what the previous key sealed, during a rotation.
* ``HOMEWARD_DLQ_HMAC_KEY``: authenticates the metadata Homeward writes on a dead letter
  (:func:`dead_letter_mac`), so ``homeward dlq`` believes only what a service wrote. When it is
  not set it is derived from the patient reference key (a separate key, by HMAC, so neither
  reveals the other); set it on its own so that rotating the patient reference key leaves
  dead letters verifiable.

A key is any text of at least :data:`MIN_KEY_LENGTH` characters; the 32 random bytes of
:data:`GENERATE` are the recommended form. The development key once shipped in the settings
(:data:`DEVELOPMENT_KEY`) is refused: it is public, so every reference made with it can be
turned back into its NHS number in about an hour.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

DEVELOPMENT_KEY = "homeward-development-key-change-me"
MIN_KEY_LENGTH = 32
# Text of example keys (deploy/base/secrets.example.yaml says CHANGE-ME-...): never a real key.
PLACEHOLDERS = ("change-me", "changeme", "change_me")
GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class KeyProblem(ValueError):
    """A configured key cannot be used; the message names the variable and how to make one."""


def check_key(variable: str, value: str | None, *, required: bool = True) -> None:
    """Refuse a missing, short or public key, naming ``variable`` and how to generate one."""
    how = f"generate one with: {GENERATE} (the native stack writes one per checkout under .local/secrets/)"
    if value is None or value == "":
        if required:
            raise KeyProblem(f"{variable} is not set; {how}")
        return
    if value == DEVELOPMENT_KEY:
        raise KeyProblem(
            f"{variable} is the public development key {DEVELOPMENT_KEY!r}: with it anyone can turn patient "
            f"references back into NHS numbers. Set a random key; {how}"
        )
    if any(mark in value.lower() for mark in PLACEHOLDERS):
        raise KeyProblem(f"{variable} is a placeholder from an example file, not a key; {how}")
    if len(value) < MIN_KEY_LENGTH:
        raise KeyProblem(f"{variable} is shorter than {MIN_KEY_LENGTH} characters; {how}")


def key_id(key: bytes) -> str:
    """A short public fingerprint of a key (8 hex digits), to tell which key made a value."""
    return hmac.new(key, b"homeward key id", hashlib.sha256).hexdigest()[:8]


def derive_key(secret: str | bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose from a configured secret (HKDF-SHA-256)."""
    material = secret.encode() if isinstance(secret, str) else secret
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"homeward {purpose} v1".encode()).derive(
        material
    )


# ------------------------------------------------------------------------------ NHS numbers at rest

_SEALED_VERSION = b"\x01"
_AAD = b"homeward nhs_number v1"


class NhsNumberCipher:
    """AES-256-GCM encryption of NHS numbers for storage.

    A sealed value is ``0x01 | key id (4 bytes) | nonce (12 bytes) | ciphertext and tag``: the
    key id says which key sealed it, so values sealed by the previous key stay readable during a
    rotation and can be found and sealed again with the current one. Each value has a random
    nonce, so the same NHS number seals differently every time: the ciphertext cannot be used
    to look a person up (that is what the keyed patient reference is for).
    """

    def __init__(self, key: str | bytes, previous: str | bytes | None = None) -> None:
        self._current = derive_key(key, "nhs-number encryption")
        self._keys = {bytes.fromhex(key_id(self._current)): AESGCM(self._current)}
        if previous:
            old = derive_key(previous, "nhs-number encryption")
            self._keys.setdefault(bytes.fromhex(key_id(old)), AESGCM(old))
        self.current_id = key_id(self._current)

    def seal(self, nhs_number: str) -> bytes:
        digits = nhs_number.replace(" ", "")
        nonce = os.urandom(12)
        kid = bytes.fromhex(self.current_id)
        return _SEALED_VERSION + kid + nonce + self._keys[kid].encrypt(nonce, digits.encode(), _AAD)

    def open(self, sealed: bytes) -> str:
        if len(sealed) < 1 + 4 + 12 + 16 or sealed[:1] != _SEALED_VERSION:
            raise ValueError("not an NHS number sealed by Homeward")
        kid, nonce, body = sealed[1:5], sealed[5:17], sealed[17:]
        aes = self._keys.get(kid)
        if aes is None:
            raise ValueError(
                f"sealed with key {kid.hex()}, which is neither HOMEWARD_NHS_NUMBER_KEY nor "
                "HOMEWARD_NHS_NUMBER_KEY_PREVIOUS"
            )
        try:
            return aes.decrypt(nonce, body, _AAD).decode()
        except InvalidTag:
            raise ValueError("a sealed NHS number failed its integrity check") from None

    def sealed_with_current(self, sealed: bytes) -> bool:
        return sealed[1:5] == bytes.fromhex(self.current_id)


# ------------------------------------------------------------------------------ dead letters

DLQ_MAC_VERSION = "v1"


def dead_letter_key(dlq_hmac_key: str | None, patient_ref_key: str) -> bytes:
    """The key that authenticates dead-letter metadata: ``HOMEWARD_DLQ_HMAC_KEY``, else one
    derived from the patient reference key."""
    return derive_key(dlq_hmac_key or patient_ref_key, "dead-letter authentication")


def dead_letter_mac(
    key: bytes,
    metadata: Sequence[tuple[str, bytes]],
    *,
    record_key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
) -> str:
    """HMAC-SHA-256 over a dead letter: every ``homeward-dlq-*`` header Homeward wrote (who
    refused it; where it came from, topic, partition and offset, which is where a replay writes
    it; why and when) and the digests of the key, value and headers kept, so that a replay puts
    back exactly what was refused."""

    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    message = json.dumps(
        [
            DLQ_MAC_VERSION,
            sorted((name, value.decode("latin-1")) for name, value in metadata),
            None if record_key is None else digest(record_key),
            digest(value),
            [[name, digest(v)] for name, v in headers],
        ],
        separators=(",", ":"),
    ).encode()
    return f"{DLQ_MAC_VERSION}:" + hmac.new(key, message, hashlib.sha256).hexdigest()


def verify_dead_letter_mac(
    keys: Sequence[bytes],
    mac: str,
    metadata: Sequence[tuple[str, bytes]],
    *,
    record_key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
) -> bool:
    """True if ``mac`` is :func:`dead_letter_mac` of the rest under one of ``keys``."""
    return any(
        hmac.compare_digest(
            dead_letter_mac(k, metadata, record_key=record_key, value=value, headers=headers).encode(),
            mac.encode(),
        )
        for k in keys
    )
