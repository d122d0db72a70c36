"""Kafka credentials and ACLs, applied as the operator (``homeward-admin``).

The policy itself is data in :mod:`homeward.contracts.access`; this module talks to the broker.
aiokafka has no admin calls for ACLs or SCRAM credentials, so this uses the Confluent client
(``confluent-kafka``, librdkafka), installed with the kit's ``admin`` extra: the native stack,
the compose init job, the ``homeward`` CLI and the tests have it; the services do not need it.
Its calls block, so async callers run them in a thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from homeward.contracts.access import Grant

from .settings import KafkaSettings

SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
TIMEOUT_S = 30.0


class AccessError(RuntimeError):
    """The broker refused or failed an access change."""


def new_password() -> str:
    """A random secret for a SCRAM credential (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def confluent_config(settings: KafkaSettings) -> dict[str, Any]:
    """The settings' connection as librdkafka configuration."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol.lower(),
        "client.id": f"{settings.client_id_prefix}-operator",
        "log_level": 3,  # errors only: librdkafka's notices (queue purges at close) are noise here
    }
    if settings.security_protocol.startswith("SASL"):
        conf["sasl.mechanism"] = settings.sasl_mechanism or "PLAIN"
        conf["sasl.username"] = settings.sasl_username or ""
        conf["sasl.password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    if settings.ssl_cafile and settings.security_protocol in ("SSL", "SASL_SSL"):
        conf["ssl.ca.location"] = settings.ssl_cafile
    return conf


class KafkaAccess:
    """An operator's handle on the broker's credentials and ACLs."""

    def __init__(self, settings: KafkaSettings) -> None:
        from confluent_kafka.admin import AdminClient

        self._admin: Any = AdminClient(confluent_config(settings))  # its stubs type the futures loosely

    # ---- SCRAM credentials --------------------------------------------------------------
    def set_password(self, user: str, password: str) -> None:
        """Create the user's SCRAM-SHA-512 credential, or replace it (rotation)."""
        from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upsert = UserScramCredentialUpsertion(user, info, password.encode())
        self._wait(self._admin.alter_user_scram_credentials([upsert]), f"set the SCRAM credential of {user}")

    def delete_user(self, user: str) -> bool:
        """Delete the user's SCRAM credential; False if it had none."""
        from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion

        if user not in self.users([user]):
            return False
        deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
        self._wait(self._admin.alter_user_scram_credentials([deletion]), f"delete the SCRAM credential of {user}")
        return True

    def users(self, names: Iterable[str] | None = None) -> set[str]:
        """The users (among ``names``, or all) that have a SCRAM credential."""
        if names is None:
            try:
                found = self._admin.describe_user_scram_credentials().result(timeout=TIMEOUT_S)
            except Exception as exc:
                raise AccessError(f"could not list SCRAM users: {exc}") from exc
            return {u for u, desc in found.items() if desc is not None and desc.scram_credential_infos}
        out = set()
        for user, fut in self._admin.describe_user_scram_credentials(list(names)).items():
            try:
                desc = fut.result(timeout=TIMEOUT_S)
            except Exception as exc:
                if "RESOURCE_NOT_FOUND" in str(exc):  # no credential: not a user
                    continue
                raise AccessError(f"could not describe the SCRAM credential of {user}: {exc}") from exc
            if desc is not None and desc.scram_credential_infos:
                out.add(user)
        return out

    # ---- ACLs -------------------------------------------------------------------------
    def grant(self, grants: Mapping[str, Iterable[Grant]]) -> int:
        """Allow each principal (a user name) its grants; existing ones are left as they are.
        Returns how many bindings were asked for. Waits until the broker enforces them."""
        from confluent_kafka.admin import AclBinding

        wanted = {user: set(gs) for user, gs in grants.items()}
        bindings = [
            AclBinding(g.resource, g.name, g.pattern, f"User:{user}", "*", g.operation, "ALLOW")
            for user, gs in wanted.items()
            for g in sorted(gs, key=repr)
        ]
        if not bindings:
            return 0
        self._wait_all(self._admin.create_acls(bindings), "create ACLs")
        self._until(lambda: all(gs <= set(self.acls(u)) for u, gs in wanted.items()), "ACLs to take effect")
        return len(bindings)

    def revoke_all(self, user: str) -> int:
        """Delete every ACL naming the principal; returns how many."""
        from confluent_kafka.admin import AclBindingFilter

        any_filter = AclBindingFilter("ANY", None, "ANY", f"User:{user}", None, "ANY", "ANY")  # type: ignore[arg-type]
        deleted = self._wait_all(self._admin.delete_acls([any_filter]), f"delete the ACLs of {user}")
        self._until(lambda: self.acl_count(user) == 0, "ACLs to be removed")
        return sum(len(d) for d in deleted)

    def revoke(self, grants: Mapping[str, Iterable[Grant]]) -> None:
        """Delete exactly these grants (a test namespace's, say)."""
        from confluent_kafka.admin import AclBindingFilter

        filters = [
            AclBindingFilter(g.resource, g.name, g.pattern, f"User:{user}", "*", g.operation, "ALLOW")
            for user, gs in grants.items()
            for g in gs
        ]
        if filters:
            self._wait_all(self._admin.delete_acls(filters), "delete ACLs")

    def acls(self, user: str) -> list[Grant]:
        from confluent_kafka.admin import AclBindingFilter

        any_filter = AclBindingFilter("ANY", None, "ANY", f"User:{user}", None, "ANY", "ANY")  # type: ignore[arg-type]
        try:
            found = self._admin.describe_acls(any_filter).result(timeout=TIMEOUT_S)
        except Exception as exc:
            raise AccessError(f"could not describe the ACLs of {user}: {exc}") from exc
        return [
            Grant(b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name)  # type: ignore[arg-type]
            for b in found
        ]

    def acl_count(self, user: str) -> int:
        return len(self.acls(user))

    # ---- plumbing ---------------------------------------------------------------------
    @staticmethod
    def _wait(futures: Mapping[Any, Any], what: str) -> None:
        for key, fut in futures.items():
            try:
                fut.result(timeout=TIMEOUT_S)
            except Exception as exc:
                raise AccessError(f"could not {what} ({key}): {exc}") from exc

    @staticmethod
    def _wait_all(futures: Mapping[Any, Any], what: str) -> list[Any]:
        out = []
        for fut in futures.values():
            try:
                out.append(fut.result(timeout=TIMEOUT_S))
            except Exception as exc:
                raise AccessError(f"could not {what}: {exc}") from exc
        return out

    @staticmethod
    def _until(check: Any, what: str, timeout_s: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise AccessError(f"timed out waiting for {what}")
            time.sleep(0.05)
