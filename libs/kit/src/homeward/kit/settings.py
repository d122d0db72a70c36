"""Settings from the environment (pydantic-settings).

Shared settings use the ``HOMEWARD_`` prefix (``HOMEWARD_KAFKA_BOOTSTRAP_SERVERS``,
``HOMEWARD_LOG_LEVEL``...); a service's own settings use ``HOMEWARD_<SERVICE>_``
(``HOMEWARD_PLACEMENTS_DATABASE_URL``...). Kafka security is configuration only:
setting ``HOMEWARD_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` and the SASL variables needs
no code change.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .auth import AuthSettings
from .crypto import KeyProblem, NhsNumberCipher, check_key, dead_letter_key
from .pseudonym import Pseudonymiser


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    client_id_prefix: str = "homeward"
    # This replica's name in its Kafka client ids: the pod or host name and process id unless
    # set. Consumer groups order their members by client id, so a replica takes the same place in
    # each of its service's groups (homeward.contracts.topics.KEYED_BY says why that matters).
    instance: str | None = None
    # How often a pattern subscription looks for new partner topics.
    metadata_max_age_ms: int = 10_000
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    topic_namespace: str = Field(default="", description="Prefix of every topic name; empty in production")

    @classmethod
    def scram(cls, bootstrap_servers: str, user: str, password: str, namespace: str | None = None) -> KafkaSettings:
        """Signed in as ``user`` with SASL/SCRAM-SHA-512 over SASL_PLAINTEXT (the native stack, tests).
        Without ``namespace``, the topic namespace comes from the environment, as for any setting."""
        fields: dict[str, Any] = {} if namespace is None else {"topic_namespace": namespace}
        return cls(
            bootstrap_servers=bootstrap_servers,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=user,
            sasl_password=SecretStr(password),
            **fields,
        )

    def as_env(self) -> dict[str, str]:
        """These settings' connection as the HOMEWARD_KAFKA_* variables a process reads."""
        env = {
            "HOMEWARD_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "HOMEWARD_KAFKA_SECURITY_PROTOCOL": self.security_protocol,
        }
        if self.sasl_mechanism:
            env["HOMEWARD_KAFKA_SASL_MECHANISM"] = self.sasl_mechanism
        if self.sasl_username is not None:
            env["HOMEWARD_KAFKA_SASL_USERNAME"] = self.sasl_username
        if self.sasl_password is not None:
            env["HOMEWARD_KAFKA_SASL_PASSWORD"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            env["HOMEWARD_KAFKA_SSL_CAFILE"] = self.ssl_cafile
        return env


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_", extra="ignore")

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    # Keys (homeward.kit.crypto says what each protects). None has a default: a service refuses
    # to start without its keys, and with the public development key.
    patient_ref_key: SecretStr | None = Field(
        default=None,
        description="Key of the keyed hash that turns an NHS number into a pseudonymous patient reference",
    )
    patient_ref_key_previous: SecretStr | None = Field(
        default=None, description="The patient reference key being replaced, during a rotation"
    )
    nhs_number_key: SecretStr | None = Field(
        default=None, description="Key that encrypts NHS numbers at rest (placements); another key than the above"
    )
    nhs_number_key_previous: SecretStr | None = Field(
        default=None, description="The NHS number key being replaced, during a rotation"
    )
    dlq_hmac_key: SecretStr | None = Field(
        default=None,
        description="Key that authenticates dead-letter metadata; derived from the patient reference key if unset",
    )
    clock: dt.datetime | None = Field(
        default=None, description="Run 'as of' this instant instead of the system clock (demos and tests)"
    )

    @staticmethod
    def _value(secret: SecretStr | None) -> str | None:
        return secret.get_secret_value() if secret is not None else None

    def check_keys(self, *, nhs_numbers: bool = False) -> None:
        """Raise :class:`~homeward.kit.crypto.KeyProblem` naming the first key that is missing,
        short or the public development key; ``nhs_numbers`` for a service that stores them."""
        check_key("HOMEWARD_PATIENT_REF_KEY", self._value(self.patient_ref_key))
        check_key("HOMEWARD_PATIENT_REF_KEY_PREVIOUS", self._value(self.patient_ref_key_previous), required=False)
        check_key("HOMEWARD_DLQ_HMAC_KEY", self._value(self.dlq_hmac_key), required=False)
        if nhs_numbers:
            check_key("HOMEWARD_NHS_NUMBER_KEY", self._value(self.nhs_number_key))
            check_key("HOMEWARD_NHS_NUMBER_KEY_PREVIOUS", self._value(self.nhs_number_key_previous), required=False)
            if self._value(self.nhs_number_key) == self._value(self.patient_ref_key):
                raise KeyProblem(
                    "HOMEWARD_NHS_NUMBER_KEY must differ from HOMEWARD_PATIENT_REF_KEY: every service holds the "
                    "patient reference key, only those that store NHS numbers may hold this one"
                )

    def pseudonymiser(self) -> Pseudonymiser:
        """References with the current key (and the previous one, during a rotation)."""
        check_key("HOMEWARD_PATIENT_REF_KEY", self._value(self.patient_ref_key))
        return Pseudonymiser(self._value(self.patient_ref_key) or "", self._value(self.patient_ref_key_previous))

    def patient_ref_secret(self) -> str:
        """The current patient reference key, checked."""
        return self.pseudonymiser().key

    def nhs_number_cipher(self) -> NhsNumberCipher:
        check_key("HOMEWARD_NHS_NUMBER_KEY", self._value(self.nhs_number_key))
        return NhsNumberCipher(self._value(self.nhs_number_key) or "", self._value(self.nhs_number_key_previous))

    def dead_letter_keys(self) -> list[bytes]:
        """The key that signs dead letters first (``HOMEWARD_DLQ_HMAC_KEY``, else derived from the
        patient reference key), then any that may have signed older ones: the derived key when
        an explicit one is set, and during a rotation the one derived from the previous patient
        reference key. An operator's ``homeward dlq`` needs only ``HOMEWARD_DLQ_HMAC_KEY``."""
        explicit, patient = self._value(self.dlq_hmac_key), self._value(self.patient_ref_key)
        previous = self._value(self.patient_ref_key_previous)
        keys = []
        if explicit:
            check_key("HOMEWARD_DLQ_HMAC_KEY", explicit)
            keys.append(dead_letter_key(explicit, ""))
        if patient or not explicit:
            check_key("HOMEWARD_PATIENT_REF_KEY", patient)
            keys.append(dead_letter_key(None, patient or ""))
        if previous:
            keys.append(dead_letter_key(None, previous))
        return list(dict.fromkeys(keys))


class ServiceSettings(BaseSettings):
    """Base for every service's settings. Subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(env_prefix="HOMEWARD_SERVICE_", extra="ignore")

    # No default: the superuser is not a service's account. The native stack, compose and the
    # Kubernetes manifests give each service its own role and database.
    database_url: str = Field(default="", description="postgresql://<the service's role>@host/<its database>")
    # Loopback by default. Any other address (containers: 0.0.0.0) is refused at start unless
    # staff sign-in is configured (HOMEWARD_AUTH_ISSUER and HOMEWARD_AUTH_JWKS; docs/staff-access.md).
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    consumer_group: str | None = None
    batch_max_records: int = 500
    batch_timeout_ms: int = 200
    retry_attempts: int = 3
    retry_backoff_s: float = 0.2
    # After a deadlock, a serialisation failure or another transient database error the
    # consumer rolls the batch back and runs it again, pausing retry_backoff_s, then twice
    # that... (at most transient_backoff_max_s), for up to transient_retry_budget_s; then it
    # rewinds the batch like an outage. Transient errors are never dead-lettered.
    transient_retry_budget_s: float = Field(default=30.0, ge=0)
    transient_backoff_max_s: float = Field(default=5.0, gt=0)
    # A dead letter's value larger than this is stored as a small JSON stub naming its
    # sha256 digest, size and origin (topic, partition, offset) instead.
    dead_letter_max_bytes: int = Field(default=512 * 1024, ge=1024)
    # A consumer subscription whose records wait without a batch committing, or the leading
    # outbox relay with pending rows and nothing published, for this long is *stalled*: /readyz
    # answers 503 naming it and homeward_stalled is 1 (homeward.kit.progress; docs/operations.md).
    stall_after_s: float = Field(default=300.0, gt=0)
    outbox_poll_interval_s: float = 1.0
    outbox_batch_size: int = 500
    # How long the relay waits for Kafka to acknowledge a batch before it counts Kafka as
    # unavailable and tries again later; and how long a stopping leader may go on publishing.
    outbox_send_timeout_s: float = Field(default=60.0, gt=0)
    outbox_drain_timeout_s: float = Field(default=10.0, ge=0)
    # Retention (the kit's job in every service): published outbox rows and inbox rows older
    # than these are deleted, retention_batch_size per statement; 0 keeps them for ever.
    # docs/operations.md says why the inbox keeps 35 days.
    outbox_retention_days: float = Field(default=7, ge=0)
    inbox_retention_days: float = Field(default=35, ge=0)
    retention_batch_size: int = Field(default=10_000, ge=1)
    # The parking lot (homeward.kit.parking): an event parked for an aggregate that has not
    # appeared after this many days is dead-lettered as parked-expired.
    parking_expiry_days: float = Field(default=30, gt=0)
    retention_interval_s: float = Field(default=3600.0, gt=0)
    scheduler_interval_s: float = 30.0
    # Scheduled jobs run once as the service starts, then every interval; with this set, the
    # first run waits this long instead (POST /admin/run-jobs runs them at any time). The fault campaign
    # restarts services half-way through replaying a history dated "as of" its end, and wants
    # no "as of" alert computed from half of it (docs/chaos.md).
    scheduler_first_run_after_s: float = Field(default=0.0, ge=0)
    pool_min_size: int = 1
    pool_max_size: int = 5

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    common: CommonSettings = Field(default_factory=CommonSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
