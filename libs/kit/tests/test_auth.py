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


def test_keys_are_fetched_from_the_issuers_jwks_url_as_an_identity_provider_publishes_them(
    signer: LocalSigner,
) -> None:
    import http.server
    import threading

    asked: list[str] = []
    body = json.dumps(signer.jwks()).encode()

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
        verifier = TokenVerifier(AuthSettings(issuer=LOCAL_ISSUER, jwks=url))
        assert verifier.remote
        for _ in range(3):
            assert verifier.verify(signer.token(org="05A", role="clinical-lead")).role == "clinical-lead"
        assert asked == ["/.well-known/jwks.json"]  # fetched once, then cached
        with pytest.raises(Unauthorized):
            verifier.verify(LocalSigner.generate().token(org="05A", role="ops"))
    finally:
        server.shutdown()
        server.server_close()


def test_the_jwks_may_be_given_as_its_json_text() -> None:
    """Where a file cannot be mounted (docker-compose's environment), HOMEWARD_AUTH_JWKS may hold
    the JWKS itself: its keys verify, another key's tokens do not, and nonsense is refused at start."""
    import json as _json

    from homeward.kit.auth import AuthSettings, LocalSigner, TokenVerifier, Unauthorized

    signer, stranger = LocalSigner.generate(), LocalSigner.generate()
    verifier = TokenVerifier(AuthSettings(issuer=signer.issuer, jwks=_json.dumps(signer.jwks())))
    assert verifier.verify(signer.token(org="05A", role="finance")).org == "05A"
    with pytest.raises(Unauthorized):
        verifier.verify(stranger.token(org="05A", role="finance"))
    with pytest.raises(ValueError, match="not a JWKS"):
        TokenVerifier(AuthSettings(issuer=signer.issuer, jwks="{not json"))
