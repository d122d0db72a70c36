"""The native stack's keys: random, one set per checkout, kept in ``.local/secrets/``.

The staff sign-in key (``auth-signing-key.pem``, ES256) and its public JWKS (``auth-jwks.json``)
live there too (:func:`ensure_auth`); ``homeward token`` signs staff tokens with it.

Homeward's services refuse to start without their keys and with the public development key
(``homeward.kit.crypto``). On this machine the stack makes them: the first ``homeward-stack
up`` (``make up``) writes each missing key to its own file, readable by its owner only
(mode 0600, in a 0700 folder); ``homeward-stack env``, ``homeward run`` and the test session
read them from there. Deleting a file makes a new key the next time, which makes what the
stack's databases hold under the old one unreadable: ``homeward-stack reset`` first.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .config import StackConfig

# environment variable -> file under .local/secrets/
KEYS = {
    "HOMEWARD_PATIENT_REF_KEY": "patient-ref-key",
    "HOMEWARD_NHS_NUMBER_KEY": "nhs-number-key",
    "HOMEWARD_DLQ_HMAC_KEY": "dlq-hmac-key",
}


def secrets_dir(cfg: StackConfig) -> Path:
    return cfg.local / "secrets"


def _read_or_create(path: Path) -> str:
    if path.exists() and (value := path.read_text().strip()):
        return value
    value = secrets.token_urlsafe(32)
    try:  # O_EXCL: if another process writes it first, use theirs
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if theirs := path.read_text().strip():
            return theirs
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)  # left empty by a process that stopped
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def ensure_secrets(cfg: StackConfig | None = None) -> dict[str, str]:
    """The stack's keys as environment variables, each file written first if missing."""
    cfg = cfg or StackConfig.load()
    folder = secrets_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    out = {}
    for variable, name in KEYS.items():
        path = folder / name
        out[variable] = _read_or_create(path)
        path.chmod(0o600)
    return out


def ensure_auth(cfg: StackConfig | None = None) -> dict[str, str]:
    """The staff sign-in settings of this checkout's local identity provider: an ES256 signing
    key and its JWKS under ``.local/secrets/``, made if absent (``homeward token`` signs with the
    key; services verify against the JWKS). Returns the HOMEWARD_AUTH_* variables."""
    from homeward.kit.auth import ensure_local_key, local_settings

    cfg = cfg or StackConfig.load()
    folder = secrets_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    ensure_local_key(folder)
    settings = local_settings(folder)
    assert settings is not None
    return settings.as_env()


def read_auth(cfg: StackConfig | None = None) -> dict[str, str]:
    """The HOMEWARD_AUTH_* variables of the local key, if it has been made (none is made here)."""
    from homeward.kit.auth import local_settings

    settings = local_settings(secrets_dir(cfg or StackConfig.load()))
    return settings.as_env() if settings is not None else {}


def read_secrets(cfg: StackConfig | None = None) -> dict[str, str]:
    """The keys already written for this checkout (none is made here)."""
    cfg = cfg or StackConfig.load()
    out = {}
    for variable, name in KEYS.items():
        path = secrets_dir(cfg) / name
        if path.exists() and (value := path.read_text().strip()):
            out[variable] = value
    return out
