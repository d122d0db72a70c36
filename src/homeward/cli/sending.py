"""Producing events onto the partners' topics, for ``homeward emit``, ``homeward scenario`` and
the main job (``runner``), with a progress bar on standard error for long runs."""

from __future__ import annotations

from typing import Any

from homeward.contracts import Event, Payload
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .api import err


async def produce_events(settings: Any, items: list[tuple[str, Event[Payload]]], progress: bool = True) -> None:
    from homeward.scenario.produce import produce

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not progress or len(items) < 50,
    ) as bar:
        task = bar.add_task("producing", total=len(items))
        await produce(settings, items, on_progress=lambda n: bar.advance(task, n))


async def send_scenario(
    sc: Any, bootstrap: str | None = None, progress: bool = True, settings: Any | None = None
) -> None:
    """Create the partners' topics and produce the scenario: with ``settings`` (KafkaSettings)
    when given, else from the environment, with ``bootstrap`` overriding the servers."""
    from homeward.kit.kafka import ensure_topics
    from homeward.kit.topics import Topics

    from .connect import kafka_settings

    if settings is None:
        # A replay of recorded partner histories is the operator's import, not any one partner's.
        settings = kafka_settings(bootstrap)
    topics = Topics(settings.topic_namespace)
    await ensure_topics(settings, topics.declared(tuple(sc.partners)))
    await produce_events(settings, [(topics.partner(p), e) for p, e in sc.events], progress=progress)
