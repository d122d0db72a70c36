"""Staff sign-in: OIDC-style bearer tokens (JWTs) verified offline, and who may see what.

Every read API of every service (and the staff pages) asks for ``Authorization: Bearer
<token>``. A token is a JWT signed by an identity provider: an NHS organisation's (any OpenID
Connect provider publishing a JWKS), or, on the native stack, the checkout's local key that
``homeward-stack up`` writes to ``.local/secrets/`` and ``homeward token`` signs with.

Verification is offline: the signature against the configured JWKS (a file, or a URL fetched
and cached by PyJWT's ``PyJWKClient``), then ``iss``, ``aud``, ``exp`` (and ``iat``/``nbf``) with
a small leeway, then Homeward's own claims: ``org`` (the caller's ODS code) and ``role``.
Unsigned tokens (``alg: none``) and symmetric algorithms are refused whatever the JWKS says.

Settings (pydantic-settings): ``HOMEWARD_AUTH_ISSUER``, ``HOMEWARD_AUTH_AUDIENCE`` (default
``homeward``), ``HOMEWARD_AUTH_JWKS`` (a path or an https/http URL). A service without an issuer
or a JWKS refuses every token (fail closed), naming the missing setting.

docs/staff-access.md describes roles, scopes, the audit trail and how an identity provider
plugs in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# ---- roles ------------------------------------------------------------------------------
COMMISSIONER: Final = "commissioner"
CASE_MANAGER: Final = "case-manager"
CLINICAL_LEAD: Final = "clinical-lead"
FINANCE: Final = "finance"
PROVIDER: Final = "provider"
OPS: Final = "ops"
ROLES: Final = (COMMISSIONER, CASE_MANAGER, CLINICAL_LEAD, FINANCE, PROVIDER, OPS)
# Staff of a commissioning organisation (sub-ICB/ICB) who work with people's placements.
COMMISSIONER_STAFF: Final = frozenset({COMMISSIONER, CASE_MANAGER, CLINICAL_LEAD})
# Who may see placement-level data (patient references), each within their own scope.
PATIENT_LEVEL: Final = COMMISSIONER_STAFF | {PROVIDER}

# Asymmetric algorithms only: a JWKS holds public keys; "none" and HS* are never accepted.
ALGORITHMS: Final = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA")
LOCAL_ALGORITHM: Final = "ES256"
LOCAL_ISSUER: Final = "homeward-local"
DEFAULT_AUDIENCE: Final = "homeward"
# Files under .local/secrets/ on the native stack.
LOCAL_SIGNING_KEY: Final = "auth-signing-key.pem"
LOCAL_JWKS: Final = "auth-jwks.json"

_ODS = re.compile(r"^[A-Z0-9]{3,9}$")


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_AUTH_", extra="ignore")

    issuer: str = Field(default="", description="The identity provider's issuer (the iss claim tokens must carry)")
    audience: str = Field(default=DEFAULT_AUDIENCE, description="The aud claim tokens must carry")
    jwks: str = Field(
        default="", description="The issuer's public keys: a JWKS file path, an http(s) URL, or the JWKS's JSON itself"
    )
    leeway_s: int = Field(default=30, ge=0, le=300, description="Clock skew allowed on exp, iat and nbf")
    jwks_cache_s: int = Field(default=300, ge=0, description="How long keys fetched from a JWKS URL are kept")

    def as_env(self) -> dict[str, str]:
        return {
            "HOMEWARD_AUTH_ISSUER": self.issuer,
            "HOMEWARD_AUTH_AUDIENCE": self.audience,
            "HOMEWARD_AUTH_JWKS": self.jwks,
        }


# ---- who is calling ---------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    """The signed-in person (or program): ``sub`` as the identity provider names them, ``org``
    the ODS code of their organisation (or, for provider staff, possibly one site), ``role``."""

    sub: str
    org: str
    role: str
    name: str | None = None

    @property
    def commissioner_staff(self) -> bool:
        return self.role in COMMISSIONER_STAFF

    @property
    def is_ops(self) -> bool:
        return self.role == OPS

    @property
    def sees_patients(self) -> bool:
        return self.role in PATIENT_LEVEL

    def to_json(self) -> dict[str, str | None]:
        return {"sub": self.sub, "org": self.org, "role": self.role, "name": self.name}


class AuthProblem(Exception):
    """An answer of 401 or 403; ``homeward.kit.http`` renders it as problem+json (RFC 9457)."""

    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthorized(AuthProblem):
    """No token, or one that does not verify: the caller is not signed in."""

    status = 401
    title = "Unauthorized"


class Forbidden(AuthProblem):
    """Signed in, but asking for what the caller's role or organisation may not see."""

    status = 403
    title = "Forbidden"


def require(caller: Caller | None, *roles: str) -> Caller:
    """The caller, if signed in with one of ``roles``; else Unauthorized or Forbidden."""
    if caller is None:
        raise Unauthorized("sign in: send Authorization: Bearer <token>")
    if roles and caller.role not in roles:
        raise Forbidden(f"the {caller.role} role may not see this (it is for {', '.join(roles)})")
    return caller


def own_organisation(caller: Caller, requested: str | None, what: str = "commissioner") -> str:
    """For a caller scoped to their organisation: the organisation to read, ``requested`` if it
    is theirs (or not given), else Forbidden."""
    if requested is not None and requested.strip().upper() != caller.org:
        raise Forbidden(f"{caller.org} staff may not see {what} {requested.strip().upper()}")
    return caller.org


@dataclass(frozen=True)
class PlacementScope:
    """Which placements a caller may see: a commissioner's (commissioner staff) or those at a
    provider's sites (provider staff, ``provider`` matching the placement's provider or site)."""

    commissioner: str | None = None
    provider: str | None = None

    @classmethod
    def of(cls, caller: Caller | None, requested_commissioner: str | None = None) -> PlacementScope:
        caller = require(caller, *sorted(PATIENT_LEVEL))
        if caller.commissioner_staff:
            return cls(commissioner=own_organisation(caller, requested_commissioner))
        wanted = requested_commissioner.strip().upper() if requested_commissioner else None
        return cls(commissioner=wanted, provider=caller.org)

    def allows(self, commissioner: str, provider: str, provider_site: str | None = None) -> bool:
        if self.commissioner is not None and commissioner != self.commissioner:
            return False
        return self.provider is None or self.provider in (provider, provider_site)


# ---- verifying --------------------------------------------------------------------------
class _InlineKeys:
    """A JWKS given as its JSON text (public keys only: handy where mounting a file is not,
    such as docker-compose's environment)."""

    def __init__(self, text: str) -> None:
        try:
            found = jwt.PyJWKSet.from_dict(json.loads(text)).keys
        except (ValueError, jwt.PyJWTError) as exc:
            raise ValueError(f"HOMEWARD_AUTH_JWKS is not a JWKS document: {exc}") from None
        self._keys: dict[str | None, jwt.PyJWK] = {k.key_id: k for k in found}

    def key_for(self, kid: str | None) -> Any:
        if kid in self._keys:
            return self._keys[kid].key
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values())).key
        raise Unauthorized("the token is signed with a key the issuer does not publish")


class _FileKeys:
    """A JWKS file, read again when it changes (a rotation adds a key without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._lock = threading.Lock()

    def keys(self) -> dict[str | None, jwt.PyJWK]:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise Unauthorized(f"the token issuer's keys cannot be read ({exc.strerror})") from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                data = json.loads(self.path.read_text())
                found = jwt.PyJWKSet.from_dict(data).keys
                self._keys = {k.key_id: k for k in found}
                self._stamp = stamp
            return self._keys

    def key_for(self, kid: str | None) -> Any:
        keys = self.keys()
        if kid in keys:
            return keys[kid].key
        if kid is None and len(keys) == 1:
            return next(iter(keys.values())).key
        raise Unauthorized("the token is signed with a key the issuer does not publish")


class _UrlKeys:
    def __init__(self, url: str, cache_s: int) -> None:
        self.client = jwt.PyJWKClient(url, cache_keys=True, lifespan=max(cache_s, 1), timeout=10)

    def key_for(self, kid: str | None) -> Any:
        try:
            if kid is None:
                keys = self.client.get_signing_keys()
                if len(keys) != 1:
                    raise Unauthorized("the token names no key (kid) and the issuer publishes several")
                return keys[0].key
            return self.client.get_signing_key(kid).key
        except jwt.PyJWKClientError as exc:
            raise Unauthorized(f"the token's key cannot be found at the issuer: {exc}") from None


class TokenVerifier:
    """Checks bearer tokens offline against one issuer, audience and JWKS."""

    def __init__(self, settings: AuthSettings | None = None) -> None:
        self.settings = settings or AuthSettings()
        jwks = self.settings.jwks.strip()
        self.problem: str | None = None
        self._keys: _FileKeys | _UrlKeys | _InlineKeys | None = None
        if not self.settings.issuer.strip():
            self.problem = "HOMEWARD_AUTH_ISSUER is not set"
        elif not jwks:
            self.problem = "HOMEWARD_AUTH_JWKS is not set"
        elif jwks.startswith(("https://", "http://")):
            self._keys = _UrlKeys(jwks, self.settings.jwks_cache_s)
        elif jwks.startswith("{"):
            self._keys = _InlineKeys(jwks)
        else:
            self._keys = _FileKeys(Path(jwks).expanduser())

    @property
    def remote(self) -> bool:
        return isinstance(self._keys, _UrlKeys)

    def verify(self, token: str) -> Caller:
        """The caller a token names, or Unauthorized saying why not."""
        if self._keys is None:
            raise Unauthorized(f"this service accepts no tokens: {self.problem}")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Unauthorized(f"tokens signed with {alg!r} are not accepted")
        key = self._keys.key_for(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(ALGORITHMS),
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"the token is not for {self.settings.audience}") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token has no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from None
        return caller_from_claims(claims)

    async def verify_async(self, token: str) -> Caller:
        """As :meth:`verify`; a JWKS URL is fetched (when not cached) off the event loop."""
        if self.remote:
            return await asyncio.to_thread(self.verify, token)
        return self.verify(token)

    async def verify_header(self, authorization: str | None) -> Caller:
        return await self.verify_async(bearer_token(authorization))


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("sign in: send Authorization: Bearer <token>")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be: Bearer <token>")
    return token.strip()


def caller_from_claims(claims: dict[str, Any]) -> Caller:
    org, role, sub = claims.get("org"), claims.get("role"), claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthorized("the token has no sub claim")
    if not isinstance(org, str) or not _ODS.match(org.strip().upper()):
        raise Unauthorized("the token's org claim must be an ODS code (3 to 9 letters and digits)")
    if role not in ROLES:
        raise Unauthorized(f"the token's role claim must be one of {', '.join(ROLES)}")
    name = claims.get("name")
    return Caller(sub=sub, org=org.strip().upper(), role=str(role), name=name if isinstance(name, str) else None)


# ---- issuing (the native stack's local key, tests) --------------------------------------
def _thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC key: the key's id in the JWKS."""
    canonical = json.dumps({k: public_jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return jwt.utils.base64url_encode(hashlib.sha256(canonical.encode()).digest()).decode()


def public_jwk(private: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"use": "sig", "alg": LOCAL_ALGORITHM, "kid": _thumbprint(jwk)})
    return jwk


def _write_private(path: Path, data: bytes) -> bool:
    """Write a new file readable by its owner only; False if another process made it first."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


def ensure_local_key(folder: Path) -> tuple[Path, Path]:
    """The local signing key (ES256, PEM) and its JWKS under ``folder``, made if absent.
    Returns (key path, JWKS path). An existing key is kept; its JWKS is rewritten if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    key_path, jwks_path = folder / LOCAL_SIGNING_KEY, folder / LOCAL_JWKS
    if not key_path.exists() or not key_path.read_bytes().strip():
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        if not _write_private(key_path, pem) and not key_path.read_bytes().strip():
            key_path.write_bytes(pem)  # left empty by a process that stopped
    key_path.chmod(0o600)
    signer = LocalSigner.from_file(key_path)
    wanted = {"keys": [signer.jwk]}
    if not jwks_path.exists() or json.loads(jwks_path.read_text() or "{}") != wanted:
        tmp = jwks_path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(wanted, indent=2) + "\n")
        tmp.replace(jwks_path)
    return key_path, jwks_path


def local_settings(folder: Path) -> AuthSettings | None:
    """The auth settings of the local key under ``folder``, if it has been made."""
    jwks = folder / LOCAL_JWKS
    if not jwks.exists():
        return None
    return AuthSettings(issuer=LOCAL_ISSUER, audience=DEFAULT_AUDIENCE, jwks=str(jwks))


@dataclass(frozen=True)
class LocalSigner:
    """Signs tokens with a private EC key (the native stack's, or a test's)."""

    private: ec.EllipticCurvePrivateKey
    issuer: str = LOCAL_ISSUER
    audience: str = DEFAULT_AUDIENCE

    @classmethod
    def generate(cls, issuer: str = LOCAL_ISSUER, audience: str = DEFAULT_AUDIENCE) -> LocalSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()), issuer, audience)

    @classmethod
    def from_file(cls, path: Path, issuer: str = LOCAL_ISSUER, audience: str = DEFAULT_AUDIENCE) -> LocalSigner:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} is not an EC private key")
        return cls(key, issuer, audience)

    @property
    def jwk(self) -> dict[str, Any]:
        return public_jwk(self.private)

    @property
    def kid(self) -> str:
        return str(self.jwk["kid"])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}

    def token(
        self,
        *,
        org: str,
        role: str,
        sub: str | None = None,
        name: str | None = None,
        ttl: dt.timedelta = dt.timedelta(hours=8),
        now: dt.datetime | None = None,
        **extra: Any,
    ) -> str:
        """A signed token for ``org``/``role``; ``extra`` claims override the standard ones
        (tests use it to make tokens with a wrong audience or issuer)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        org = org.strip().upper()
        if not _ODS.match(org):
            raise ValueError("org must be an ODS code (3 to 9 letters and digits)")
        issued = now or dt.datetime.now(dt.UTC)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub or f"{role}@{org.lower()}",
            "iat": int(issued.timestamp()),
            "exp": int((issued + ttl).timestamp()),
            "jti": uuid.uuid4().hex,
            "org": org,
            "role": role,
        }
        if name:
            claims["name"] = name
        claims.update(extra)
        return jwt.encode(claims, self.private, algorithm=LOCAL_ALGORITHM, headers={"kid": self.kid})


def issue_local_token(
    folder: Path,
    *,
    org: str,
    role: str,
    sub: str | None = None,
    name: str | None = None,
    ttl: dt.timedelta = dt.timedelta(hours=8),
) -> str:
    """A token signed by the native stack's local key under ``folder`` (``.local/secrets``)."""
    key_path = folder / LOCAL_SIGNING_KEY
    if not key_path.exists():
        raise FileNotFoundError(f"no local signing key at {key_path}: homeward-stack up (make up) makes it")
    return LocalSigner.from_file(key_path).token(org=org, role=role, sub=sub, name=name, ttl=ttl)


def parse_ttl(text: str) -> dt.timedelta:
    """``90s``, ``15m``, ``8h``, ``2d`` (or plain seconds) as a duration."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError("a duration is a whole number followed by s, m, h or d, such as 8h")
    n, unit = int(m.group(1)), m.group(2) or "s"
    return dt.timedelta(seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def roles_text(roles: Iterable[str] = ROLES) -> str:
    return ", ".join(roles)
