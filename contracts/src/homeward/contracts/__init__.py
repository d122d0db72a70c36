"""Homeward event contracts: the public interface to partner organisations."""

from .envelope import (
    STRUCTURED_CONTENT_TYPE,
    Attributes,
    Event,
    caused_by,
    new_event,
    parse_json,
    parse_kafka,
    partner_source,
    service_source,
    source_organisation,
    source_service,
)
from .errors import ContractError, FieldProblem
from .events import ALL_PAYLOADS, EVENT_TYPES, INBOUND, INTERNAL, Payload, payload_class
from .identifiers import is_valid_nhs_number, nhs_number_check_digit, nhs_number_problem
from .topics import dead_letter_topic, declared_topics, internal_topic, partner_of, partner_topic

__all__ = [
    "ALL_PAYLOADS",
    "EVENT_TYPES",
    "INBOUND",
    "INTERNAL",
    "STRUCTURED_CONTENT_TYPE",
    "Attributes",
    "ContractError",
    "Event",
    "FieldProblem",
    "Payload",
    "caused_by",
    "dead_letter_topic",
    "declared_topics",
    "internal_topic",
    "is_valid_nhs_number",
    "new_event",
    "nhs_number_check_digit",
    "nhs_number_problem",
    "parse_json",
    "parse_kafka",
    "partner_of",
    "partner_source",
    "partner_topic",
    "payload_class",
    "service_source",
    "source_organisation",
    "source_service",
]
