"""Topic names as a running service sees them.

In production the namespace is empty and names are exactly those of
``homeward.contracts.topics``. Tests (and a shared cluster hosting several
environments) set ``HOMEWARD_KAFKA_TOPIC_NAMESPACE`` so that each run has its own
topics: ``<ns>partner.<ODS>.events``, ``<ns>homeward.placements.v1``...
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from homeward.contracts import topics as contract


@dataclass(frozen=True)
class Topics:
    namespace: str = ""

    def partner(self, ods: str) -> str:
        return self.namespace + contract.partner_topic(ods)

    def internal(self, service: str) -> str:
        return self.namespace + contract.internal_topic(service)

    def dlq(self, service: str) -> str:
        return self.namespace + contract.dead_letter_topic(service)

    @property
    def partner_pattern(self) -> str:
        return re.escape(self.namespace) + contract.PARTNER_TOPIC_PATTERN

    def strip(self, topic: str) -> str:
        """The contract name of a (possibly namespaced) topic."""
        if self.namespace and topic.startswith(self.namespace):
            return topic[len(self.namespace) :]
        return topic

    def declared(self, partners: tuple[str, ...] = ()) -> list[contract.TopicSpec]:
        return [
            contract.TopicSpec(self.namespace + t.name, t.partitions, t.retention_ms, t.purpose)
            for t in contract.declared_topics(partners)
        ]
