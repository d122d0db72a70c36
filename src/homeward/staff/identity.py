"""Who is signed in: the bearer token (from the sign-in cookie or an ``Authorization`` header),
verified offline by the kit (``homeward.kit.auth``) against the configured issuer, audience and
JWKS, exactly as the services verify it. The staff view forwards the same token to the services,
which scope every answer to the caller and write the audit trail; the claims are used here only
to say who is signed in and to pick the organisation's figures."""

from __future__ import annotations

from dataclasses import dataclass

from homeward.kit.auth import COMMISSIONER_STAFF, FINANCE, AuthProblem, TokenVerifier

# Roles whose pages show one commissioner's figures: their own organisation's.
COMMISSIONER_ROLES = COMMISSIONER_STAFF | {FINANCE}


class NotSignedIn(Exception):
    """No token, or one the verifier refused; the message says why, for the sign-in page."""


@dataclass(frozen=True)
class SignedIn:
    token: str
    subject: str
    org: str
    role: str
    name: str

    @property
    def commissioner(self) -> str | None:
        """The commissioner whose figures the pages show (None for provider and ops staff)."""
        return self.org if self.role in COMMISSIONER_ROLES else None


def identify(token: str, verifier: TokenVerifier) -> SignedIn:
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token:
        raise NotSignedIn("no token was given")
    try:
        caller = verifier.verify(token)
    except AuthProblem as exc:
        raise NotSignedIn(exc.detail) from None
    return SignedIn(token, caller.sub, caller.org, caller.role, caller.name or caller.sub)
