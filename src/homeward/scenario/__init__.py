"""The Coming Home scenario: a seeded, data-driven generator of partner events."""

from .generator import Scenario, ScenarioConfig, generate

__all__ = ["Scenario", "ScenarioConfig", "generate"]
