"""What the container image installs: the workspace packages as wheels, not the source tree.
Each service's wheel must carry its SQL migrations (and the kit's its own), or a service in
the image would start with no tables."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from homeward.contracts.topics import SERVICES
from homeward.kit.db import load_migrations, service_migrations

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    built = {}
    for name in ("kit", *SERVICES):
        package = f"homeward-{name}"
        subprocess.run(
            ["uv", "build", "--package", package, "--wheel", "--out-dir", str(out / name)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        [built[name]] = list((out / name).glob("*.whl"))
    return built


@pytest.mark.parametrize("service", SERVICES)
def test_service_wheel_carries_its_migrations_and_finds_them_installed(
    service: str, wheels: dict[str, Path], tmp_path: Path
) -> None:
    with zipfile.ZipFile(wheels[service]) as wheel:
        wheel.extractall(tmp_path)
    installed = tmp_path / "homeward" / service
    found = service_migrations(str(installed / "entrypoints" / "app.py"))
    assert found == installed / "migrations"
    source = ROOT / "services" / service / "migrations"
    assert sorted(p.name for p in found.glob("*.sql")) == sorted(p.name for p in source.glob("*.sql"))
    assert [m.checksum for m in load_migrations(service, found)] == [
        m.checksum for m in load_migrations(service, source)
    ]


def test_kit_wheel_carries_the_inbox_and_outbox_migrations(wheels: dict[str, Path]) -> None:
    source = ROOT / "libs" / "kit" / "src" / "homeward" / "kit" / "migrations"
    with zipfile.ZipFile(wheels["kit"]) as wheel:
        names = {n for n in wheel.namelist() if n.startswith("homeward/kit/migrations/")}
    assert names == {f"homeward/kit/migrations/{p.name}" for p in source.glob("*.sql")}


def test_every_service_in_the_workspace_is_packaged() -> None:
    """A service under services/ that SERVICES does not name would get no wheel check here."""
    assert {p.parent.name for p in ROOT.glob("services/*/pyproject.toml")} == set(SERVICES)


def test_source_checkout_finds_the_service_migrations() -> None:
    for service in SERVICES:
        app = ROOT / "services" / service / "src" / "homeward" / service / "entrypoints" / "app.py"
        assert service_migrations(str(app)) == ROOT / "services" / service / "migrations"
