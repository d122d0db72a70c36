"""Who may do what on Kafka: the principals and their least-privilege grants, as data.

Every client authenticates (SASL/SCRAM-SHA-512) and the broker refuses whatever no ACL allows
(``allow.everyone.if.no.acl.found=false``). The grants below are the whole policy; the native
stack, the compose init job, ``homeward partner add`` and the tests apply them through
``homeward.kit.access``, and deploy/base/kafka/users.yaml states them for Strimzi (a test checks
that it says the same).

* A **partner** (``User:<ODS>``) may write and describe only its own topic,
  ``partner.<ODS>.events``. Nothing else: it cannot read anything back.
* A **service** (``User:homeward-<service>``) may write its own topic and its own dead-letter
  topic, read the topics it consumes (:data:`~homeward.contracts.topics.CONSUMES`), and use its
  own consumer groups (``homeward-<service>``, ``homeward-<service>-1``...). The ingress also
  reads every partner topic, and writes them: it puts what partners post over HTTP onto the
  partner's own topic, so that both ways in share everything downstream.
* **Ops** (``User:homeward-ops``, people on call and their tools) may read the dead-letter
  topics, describe every topic and consumer group (``homeward lag``), and write partner topics,
  which is how ``homeward dlq replay`` puts a corrected record back where it came from.
* The **admin** (``User:homeward-admin``) is a super user: it creates topics, credentials and
  ACLs. Services never run as it.

A ``namespace`` prefixes every topic and group name, as ``HOMEWARD_KAFKA_TOPIC_NAMESPACE`` does
for a test run or for one of several environments sharing a cluster; partners' principals then
carry it too, so that two environments' ``05A`` are two principals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .topics import CONSUMES, SERVICES, dead_letter_topic, internal_topic, partner_topic

ADMIN = "homeward-admin"
OPS = "homeward-ops"

# The CloudEvents extension attribute in which the ingress names, on every partner event it
# forwards, the principal that could have written it: ``User:<ODS>`` (the only Kafka user the
# ACLs let write ``partner.<ODS>.events``) or, for an event posted over HTTP, ``apikey:<key id>``.
# The ingress always sets it, replacing any a partner sent; services believe it only on the
# ingress's topic, which only the ingress may write.
PRINCIPAL_EXTENSION = "principal"

Operation = Literal["READ", "WRITE", "DESCRIBE"]
Resource = Literal["TOPIC", "GROUP"]
Pattern = Literal["LITERAL", "PREFIXED"]


@dataclass(frozen=True)
class Grant:
    """One ALLOW ACL: ``operation`` on the resources named ``name`` (or starting with it)."""

    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation


def service_principal(service: str) -> str:
    return f"homeward-{service}"


def partner_principal(ods: str, namespace: str = "") -> str:
    return f"{namespace}{ods.upper()}"


def _topic(name: str, *ops: Operation, pattern: Pattern = "LITERAL") -> list[Grant]:
    return [Grant("TOPIC", name, pattern, op) for op in ops]


def service_grants(service: str, namespace: str = "") -> list[Grant]:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    ns = namespace
    grants = _topic(ns + internal_topic(service), "WRITE", "DESCRIBE")
    grants += _topic(ns + dead_letter_topic(service), "WRITE", "DESCRIBE")
    for source in CONSUMES[service]:
        grants += _topic(ns + internal_topic(source), "READ", "DESCRIBE")
    if service == "ingress":
        grants += _topic(ns + "partner.", "READ", "WRITE", "DESCRIBE", pattern="PREFIXED")
    grants.append(Grant("GROUP", f"{ns}homeward-{service}", "PREFIXED", "READ"))
    grants.append(Grant("GROUP", f"{ns}homeward-{service}", "PREFIXED", "DESCRIBE"))
    return grants


def ops_grants(namespace: str = "") -> list[Grant]:
    ns = namespace
    grants = _topic(ns + "homeward.dlq.", "READ", "DESCRIBE", pattern="PREFIXED")
    grants += _topic(ns + "partner.", "WRITE", "DESCRIBE", pattern="PREFIXED")
    grants += _topic(ns + "homeward.", "DESCRIBE", pattern="PREFIXED")
    grants.append(Grant("GROUP", ns + "homeward-", "PREFIXED", "DESCRIBE"))
    return grants


def partner_grants(ods: str, namespace: str = "") -> list[Grant]:
    return _topic(namespace + partner_topic(ods), "WRITE", "DESCRIBE")


def homeward_grants(namespace: str = "") -> dict[str, list[Grant]]:
    """Every service's and ops' grants, by principal name (without ``User:``)."""
    grants = {service_principal(s): service_grants(s, namespace) for s in SERVICES}
    grants[OPS] = ops_grants(namespace)
    return grants
