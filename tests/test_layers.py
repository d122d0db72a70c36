"""Packages follow the layers: no import cycles, no service importing another, nothing low
importing something high, and no domain reaching I/O.

The import graph is grimp's (the engine of import-linter): it parses every module of the
workspace's ``homeward.*`` packages without importing them, relative imports, imports inside
functions and ``if TYPE_CHECKING:`` blocks included, and keeps the third-party packages they
import as nodes of their own. The rules are plain functions over that graph, so each is also
tested on a small graph with the fault planted (the ``test_*_is_reported`` tests below).

The layers, bottom up (a package may import only those listed for it in ``MAY_IMPORT``)::

    contracts                         the events, topics and access policy
    kit                               service plumbing (contracts)
    ingress referrals placements      the services (contracts, kit), never one another
    budget notifications
    devstack scenario                 the native stack; the scenario generator (contracts, kit)
    testing                           the pytest plugin (contracts, kit, devstack)
    cli                               the ``homeward`` commands (all of the above but testing)
    staff                             the staff view (contracts, kit, cli)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp
import pytest
from homeward.contracts.topics import SERVICES

ROOT = Path(__file__).resolve().parents[1]

_LOW = {"contracts", "kit"}
MAY_IMPORT: dict[str, set[str]] = {
    "contracts": set(),
    "kit": {"contracts"},
    **{service: set(_LOW) for service in SERVICES},
    "devstack": set(_LOW),
    "scenario": set(_LOW),
    "testing": _LOW | {"devstack"},
    "cli": _LOW | {"devstack", "scenario", *SERVICES},
    "staff": _LOW | {"cli"},
}

# Test tooling: only the test support (homeward.testing) may import it.
TEST_ONLY = ("pytest", "_pytest", "testcontainers", "docker", "hypothesis")
TEST_PACKAGES = {"testing"}

# What does I/O (network, database, broker, mail, web, metrics export, log set-up): a module of a
# service's ``domain`` package may reach none of them, directly or through what it imports.
IO_PACKAGES = (
    "asyncpg",
    "aiokafka",
    "faststream",
    "confluent_kafka",
    "httpx",
    "starlette",
    "uvicorn",
    "aiosmtplib",
    "smtplib",
    "socket",
    "structlog",
    "prometheus_client",
)


# ---- the rules, over any grimp graph -------------------------------------------------------


def package_of(module: str) -> str | None:
    """``homeward.kit.consumer`` → ``kit``; None for a module outside Homeward."""
    parts = module.split(".")
    return parts[1] if parts[0] == "homeward" and len(parts) > 1 else None


def _internal(graph: grimp.ImportGraph) -> list[str]:
    return sorted(m for m in graph.modules if package_of(m) is not None)


def import_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Each set of Homeward modules that import one another in a circle, as one circle through
    them (``a → b → a``). Tarjan's strongly connected components, iteratively."""
    modules = _internal(graph)
    edges = {m: sorted(x for x in graph.find_modules_directly_imported_by(m) if package_of(x)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(edges.get(nxt, []))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in edges[node]:
                        components.append(sorted(component))
    cycles = []
    for component in sorted(components):
        first = component[0]
        second = next(x for x in edges[first] if x in component)
        if second == first:  # a module importing itself
            cycles.append((first, first))
            continue
        back = graph.find_shortest_chain(importer=second, imported=first) or (second, first)
        cycles.append((first, *back))
    return cycles


def layer_violations(graph: grimp.ImportGraph, may_import: Mapping[str, Iterable[str]]) -> list[str]:
    """Every direct import of one Homeward package by another that ``may_import`` does not allow
    (a service importing another service among them), and every package it does not place."""
    found = []
    for module in _internal(graph):
        here = package_of(module)
        assert here is not None
        if here not in may_import:
            found.append(f"{module}: package homeward.{here} has no place in the layers (MAY_IMPORT)")
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            there = package_of(imported)
            if there is not None and there != here and there not in may_import[here]:
                found.append(f"{module} imports {imported} (homeward.{here} may not import homeward.{there})")
    return found


def tooling_imports(graph: grimp.ImportGraph, allowed: Iterable[str] = TEST_PACKAGES) -> list[str]:
    """Every import of test tooling (pytest, testcontainers...) outside the test support."""
    allowed = set(allowed)
    found = []
    for module in _internal(graph):
        if package_of(module) in allowed:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported.split(".")[0] in TEST_ONLY:
                found.append(f"{module} imports {imported}")
    return found


def domain_io(graph: grimp.ImportGraph, services: Iterable[str], io: Iterable[str] = IO_PACKAGES) -> list[str]:
    """Each chain of imports from a module of a service's ``domain`` package to an I/O package."""
    found = []
    present = [p for p in io if p in graph.modules]
    for service in services:
        domain = f"homeward.{service}.domain"
        if domain not in graph.modules:
            continue
        for module in sorted({domain} | graph.find_descendants(domain)):
            for package in present:
                chain = graph.find_shortest_chain(importer=module, imported=package)
                if chain:
                    found.append(" → ".join(chain))
    return found


# ---- the workspace's graph -------------------------------------------------------------------


def workspace_packages() -> list[str]:
    """Every ``homeward.<name>`` package in the workspace (each member's ``src/homeward/<name>``)."""
    found = {
        init.parent.name
        for init in ROOT.glob("**/src/homeward/*/__init__.py")
        if not {".venv", ".local", "node_modules", ".git"} & set(init.relative_to(ROOT).parts)
    }
    return sorted(f"homeward.{name}" for name in found)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    packages = workspace_packages()
    return grimp.build_graph(*packages, include_external_packages=True, cache_dir=None)


def test_the_graph_holds_every_homeward_package(graph: grimp.ImportGraph) -> None:
    """The checks below look at the whole workspace, not a part of it that happened to be found."""
    packages = {package_of(m) for m in _internal(graph)}
    assert {"contracts", "kit", "testing", "devstack", "cli", *SERVICES} <= packages
    assert len(_internal(graph)) > 100
    for service in SERVICES:
        assert f"homeward.{service}.domain" in graph.modules, service


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    assert import_cycles(graph) == []


def test_packages_import_only_the_layers_below_them(graph: grimp.ImportGraph) -> None:
    """Services never import one another (they talk through Kafka); the kit imports no service,
    no devstack and no test support; the contracts import nothing of Homeward's."""
    assert layer_violations(graph, MAY_IMPORT) == []


def test_only_the_test_support_imports_pytest_or_test_containers(graph: grimp.ImportGraph) -> None:
    assert tooling_imports(graph) == []


def test_no_domain_reaches_io(graph: grimp.ImportGraph) -> None:
    """A service's ``domain`` is pure: it may use the contracts and the kit's pure modules
    (``identity``, ``redaction``, ``authority``, ``clock``...), nothing that talks to the world."""
    assert domain_io(graph, SERVICES) == []


# ---- each rule finds the fault it is for ------------------------------------------------------


def tiny_graph(*imports: tuple[str, str], external: Iterable[str] = ()) -> grimp.ImportGraph:
    g = grimp.ImportGraph()
    for name in external:
        g.add_module(name, is_squashed=True)
    for importer, imported in imports:
        for m in (importer, imported):
            if m not in g.modules:
                g.add_module(m)
        g.add_import(importer=importer, imported=imported)
    return g


def test_a_planted_cycle_is_reported() -> None:
    g = tiny_graph(
        ("homeward.referrals.domain.model", "homeward.referrals.domain.rules"),
        ("homeward.referrals.domain.rules", "homeward.referrals.domain.days"),
        ("homeward.referrals.domain.days", "homeward.referrals.domain.model"),
        ("homeward.referrals.handlers", "homeward.referrals.domain.model"),
    )
    assert import_cycles(g) == [
        (
            "homeward.referrals.domain.days",
            "homeward.referrals.domain.model",
            "homeward.referrals.domain.rules",
            "homeward.referrals.domain.days",
        )
    ]
    g.remove_import(importer="homeward.referrals.domain.days", imported="homeward.referrals.domain.model")
    assert import_cycles(g) == []


def test_two_cycles_and_a_self_import_are_each_reported() -> None:
    g = tiny_graph(
        ("homeward.cli.main", "homeward.cli.runner"),
        ("homeward.cli.runner", "homeward.cli.main"),
        ("homeward.kit.a", "homeward.kit.a"),
        ("homeward.kit.b", "homeward.kit.c"),
    )
    assert import_cycles(g) == [
        ("homeward.cli.main", "homeward.cli.runner", "homeward.cli.main"),
        ("homeward.kit.a", "homeward.kit.a"),
    ]


def test_a_service_importing_another_service_is_reported() -> None:
    g = tiny_graph(
        ("homeward.budget.handlers", "homeward.placements.domain.model"),
        ("homeward.budget.handlers", "homeward.kit.consumer"),
    )
    assert layer_violations(g, MAY_IMPORT) == [
        "homeward.budget.handlers imports homeward.placements.domain.model "
        "(homeward.budget may not import homeward.placements)"
    ]


def test_the_kit_importing_a_service_devstack_or_the_test_support_is_reported() -> None:
    g = tiny_graph(
        ("homeward.kit.testing", "homeward.devstack.secrets"),
        ("homeward.kit.service", "homeward.notifications.settings"),
        ("homeward.kit.http", "homeward.testing"),
        ("homeward.kit.kafka", "homeward.contracts.topics"),
    )
    assert layer_violations(g, MAY_IMPORT) == [
        "homeward.kit.http imports homeward.testing (homeward.kit may not import homeward.testing)",
        "homeward.kit.service imports homeward.notifications.settings "
        "(homeward.kit may not import homeward.notifications)",
        "homeward.kit.testing imports homeward.devstack.secrets (homeward.kit may not import homeward.devstack)",
    ]


def test_a_package_outside_the_layers_is_reported() -> None:
    g = tiny_graph(("homeward.newthing.app", "homeward.kit.db"))
    assert layer_violations(g, MAY_IMPORT) == [
        "homeward.newthing.app: package homeward.newthing has no place in the layers (MAY_IMPORT)"
    ]


def test_pytest_outside_the_test_support_is_reported() -> None:
    g = tiny_graph(
        ("homeward.kit.testing", "pytest"),
        ("homeward.testing", "pytest"),
        ("homeward.placements.adapters.db", "testcontainers"),
        external=("pytest", "testcontainers"),
    )
    assert tooling_imports(g) == [
        "homeward.kit.testing imports pytest",
        "homeward.placements.adapters.db imports testcontainers",
    ]


def test_a_domain_reaching_io_through_the_kit_is_reported() -> None:
    g = tiny_graph(
        ("homeward.notifications.domain", "homeward.notifications.domain.model"),
        ("homeward.notifications.domain.model", "homeward.kit.consumer"),
        ("homeward.kit.consumer", "asyncpg"),
        ("homeward.notifications.domain.alerts", "homeward.kit.redaction"),
        ("homeward.notifications.adapters.smtp", "aiosmtplib"),
        external=("asyncpg", "aiosmtplib"),
    )
    assert domain_io(g, ["notifications"]) == [
        "homeward.notifications.domain → homeward.notifications.domain.model → homeward.kit.consumer → asyncpg",
        "homeward.notifications.domain.model → homeward.kit.consumer → asyncpg",
    ]
