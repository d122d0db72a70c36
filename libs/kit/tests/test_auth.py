"""Staff tokens: what verifies and what is refused, and why (homeward.kit.auth)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import jwt
import pytest
from homeward.kit.auth import (
    LOCAL_ISSUER,
    AuthSettings,
    Caller,
    Forbidden,
    LocalSigner,
    PlacementScope,
    TokenVerifier,
    Unauthorized,
    ensure_local_key,
    issue_local_token,
    local_settings,
    own_organisation,
    parse_ttl,
)


@pytest.fixture
def signer() -> LocalSigner:
    return LocalSigner.generate()


@pytest.fixture
def verifier(signer: LocalSigner, tmp_path: Path) -> TokenVerifier:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(signer.jwks()))
    return TokenVerifier(AuthSettings(issuer=LOCAL_ISSUER, audience="homeward", jwks=str(jwks)))


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_token_from_the_trusted_key_names_the_caller(signer: LocalSigner, verifier: TokenVerifier) -> None:
    token = signer.token(org="05a", role="case-manager", sub="alice", name="Alice Smith")
    assert verifier.verify(token) == Caller(sub="alice", org="05A", role="case-manager", name="Alice Smith")


def _forge(signer: LocalSigner, **claims: object) -> str:
    """A token signed by the trusted key with some claims changed."""
    good = jwt.decode(signer.token(org="05A", role="case-manager"), options={"verify_signature": False})
    return jwt.encode({**good, **claims}, signer.private, algorithm="ES256", headers={"kid": signer.kid})


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": 1_000_000_000, "iat": 999_000_000}, "expired"),
        ({"aud": "someone-else"}, "not for homeward"),
        ({"iss": "https://idp.example.nhs.uk"}, "another issuer"),
        ({"role": "superuser"}, "role"),
        ({"org": "not an ods code"}, "org"),
        ({"org": None}, "org"),
        ({"sub": None}, "sub"),
    ],
)
def test_tokens_that_are_expired_for_others_or_claim_too_much_are_refused(
    signer: LocalSigner, verifier: TokenVerifier, claims: dict[str, object], why: str
) -> None:
    assert verifier.verify(_forge(signer)).org == "05A"  # the same token unchanged is good
    with pytest.raises(Unauthorized, match=why):
        verifier.verify(_forge(signer, **claims))


def test_an_unsigned_token_is_refused(signer: LocalSigner, verifier: TokenVerifier) -> None:
    claims = jwt.decode(signer.token(org="05A", role="ops"), options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(Unauthorized, match="none"):
        verifier.verify(unsigned)


def test_a_token_signed_with_a_shared_secret_is_refused(signer: LocalSigner, verifier: TokenVerifier) -> None:
    claims = jwt.decode(signer.token(org="05A", role="ops"), options={"verify_signature": False})
    # HS256 with the public key as the "secret": the classic algorithm-confusion forgery.
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': signer.kid})}.{_b64(claims)}"
    mac = hmac.new(json.dumps(signer.jwk).encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(Unauthorized, match="HS256"):
        verifier.verify(forged)


def test_a_token_signed_by_another_key_is_refused(verifier: TokenVerifier, signer: LocalSigner) -> None:
    stranger = LocalSigner.generate()
    with pytest.raises(Unauthorized, match="does not publish"):
        verifier.verify(stranger.token(org="05A", role="ops"))
    # Even claiming the trusted key's id, the signature does not verify.
    forged = jwt.encode(
        jwt.decode(stranger.token(org="05A", role="ops"), options={"verify_signature": False}),
        stranger.private,
        algorithm="ES256",
        headers={"kid": signer.kid},
    )
    with pytest.raises(Unauthorized, match="signature"):
        verifier.verify(forged)


def test_a_tampered_token_is_refused(signer: LocalSigner, verifier: TokenVerifier) -> None:
    head, body, sig = signer.token(org="05A", role="case-manager").split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["org"] = "05R"
    with pytest.raises(Unauthorized, match="signature"):
        verifier.verify(f"{head}.{_b64(claims)}.{sig}")


def test_without_an_issuer_or_keys_every_token_is_refused(signer: LocalSigner) -> None:
    with pytest.raises(Unauthorized, match="HOMEWARD_AUTH_ISSUER"):
        TokenVerifier(AuthSettings(issuer="", jwks="/nowhere")).verify(signer.token(org="05A", role="ops"))
    with pytest.raises(Unauthorized, match="HOMEWARD_AUTH_JWKS"):
        TokenVerifier(AuthSettings(issuer=LOCAL_ISSUER, jwks="")).verify(signer.token(org="05A", role="ops"))


def test_the_local_key_is_made_once_and_its_tokens_verify(tmp_path: Path) -> None:
    key, jwks = ensure_local_key(tmp_path / "secrets")
    assert key.stat().st_mode & 0o077 == 0
    again = ensure_local_key(tmp_path / "secrets")
    assert again == (key, jwks) and key.read_bytes() == again[0].read_bytes()
    settings = local_settings(tmp_path / "secrets")
    assert settings is not None
    token = issue_local_token(tmp_path / "secrets", org="05R", role="finance", ttl=parse_ttl("15m"))
    assert TokenVerifier(settings).verify(token).role == "finance"


def test_scopes_keep_each_organisation_to_its_own() -> None:
    cm = Caller("a", "05A", "case-manager")
    assert own_organisation(cm, None) == "05A" and own_organisation(cm, "05a") == "05A"
    with pytest.raises(Forbidden):
        own_organisation(cm, "05R")
    assert PlacementScope.of(cm) == PlacementScope(commissioner="05A")
    provider = PlacementScope.of(Caller("p", "RX1", "provider"))
    assert (
        provider.allows("05A", "RX1") and provider.allows("05R", "OTHER", "RX1") and not provider.allows("05A", "RX2")
    )
    for role in ("finance", "ops"):
        with pytest.raises(Forbidden):
            PlacementScope.of(Caller("x", "05A", role))
    with pytest.raises(Unauthorized):
        PlacementScope.of(None)
