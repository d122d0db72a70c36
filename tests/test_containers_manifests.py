"""The Kubernetes manifests as a cluster would take them: `kustomize build` of deploy/base and of
every overlay, `kubernetes-validate --strict` on the core kinds, and the Strimzi resources
against the fields Homeward relies on (containers/strimzi/fields.yaml). tests/test_compose.py
cross-checks what they say against the code; this checks that Kubernetes would accept them.

scripts/containers/check-manifests.sh installs kustomize (go install) and kubernetes-validate
(PyPI) into .local/containers/tools when they are missing, and fails with the reason when it
cannot: these tests never skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "containers" / "check-manifests.sh"

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]  # the first may install the tools


def check(*targets: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *map(str, targets)], capture_output=True, text=True, check=False, timeout=600)


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    """A copy of deploy/ to break on purpose; containers/strimzi/ comes along for the field list."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    return tmp_path / "deploy"


def break_manifest(path: Path, kind: str, change: object) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    target = next(d for d in docs if d and d["kind"] == kind)
    change(target)  # type: ignore[operator]
    path.write_text(yaml.safe_dump_all(docs))


def test_base_and_every_overlay_build_and_validate() -> None:
    result = check()
    assert result.returncode == 0, result.stdout + result.stderr
    overlays = sorted(p.parent.name for p in (ROOT / "deploy" / "overlays").glob("*/kustomization.yaml"))
    assert overlays, "no overlay found"
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{ROOT / 'deploy' / 'base'}: ") and line.endswith(": ok") for line in lines), lines
    for overlay in overlays:
        assert any(f"/overlays/{overlay}: " in line and line.endswith(": ok") for line in lines), (overlay, lines)
    # Every kind Homeward ships was in the build, Strimzi's included.
    shipped = ("Deployment", "Service", "HorizontalPodAutoscaler", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser")
    for kind in shipped:
        assert kind in result.stdout, kind


def test_a_misspelt_core_field_is_rejected(deploy_copy: Path) -> None:
    def misspell(doc: dict) -> None:  # type: ignore[type-arg]
        doc["spec"]["replicaz"] = doc["spec"].pop("replicas", 2)

    break_manifest(deploy_copy / "base" / "services" / "placements.yaml", "Deployment", misspell)
    result = check(deploy_copy / "base")
    assert result.returncode != 0
    assert "replicaz" in result.stdout, result.stdout


def test_a_misspelt_strimzi_field_is_rejected(deploy_copy: Path) -> None:
    def misspell(doc: dict) -> None:  # type: ignore[type-arg]
        doc["spec"]["partitons"] = doc["spec"].pop("partitions")

    break_manifest(deploy_copy / "base" / "kafka" / "topics.yaml", "KafkaTopic", misspell)
    result = check(deploy_copy / "base")
    assert result.returncode != 0
    assert "KafkaTopic/" in result.stdout and "partitons" in result.stdout, result.stdout


def test_a_strimzi_acl_operation_that_does_not_exist_is_rejected(deploy_copy: Path) -> None:
    def bad_operation(doc: dict) -> None:  # type: ignore[type-arg]
        doc["spec"]["authorization"]["acls"][0]["operations"] = ["Produce"]

    break_manifest(deploy_copy / "base" / "kafka" / "users.yaml", "KafkaUser", bad_operation)
    result = check(deploy_copy / "base")
    assert result.returncode != 0
    assert "KafkaUser/" in result.stdout and "Produce" in result.stdout, result.stdout


def test_an_overlay_patch_that_matches_nothing_is_rejected(deploy_copy: Path) -> None:
    # kustomize itself applies such a patch to nothing and says nothing.
    overlay = deploy_copy / "overlays" / "production" / "kustomization.yaml"
    text = overlay.read_text()
    assert "name: budget" in text
    overlay.write_text(text.replace("name: budget", "name: budgett", 1))
    result = check(deploy_copy / "overlays" / "production")
    assert result.returncode != 0
    assert "'budgett'} matches no resource" in result.stdout, result.stdout


def test_an_overlay_that_does_not_build_is_rejected(deploy_copy: Path) -> None:
    overlay = deploy_copy / "overlays" / "production" / "kustomization.yaml"
    overlay.write_text(overlay.read_text().replace("../../base", "../../bass", 1))
    result = check(deploy_copy / "overlays" / "production")
    assert result.returncode != 0
    assert "kustomize build failed" in result.stdout + result.stderr
