"""Validate the Kubernetes manifests: `kustomize build` of deploy/base and of every overlay,
`kubernetes-validate --strict` on the core kinds, and the Strimzi kinds against the fields
Homeward relies on (containers/strimzi/fields.yaml; no Strimzi schema is available offline).

Run by scripts/containers/check-manifests.sh with the tools' Python (.local/containers/tools:
jsonschema and PyYAML come with kubernetes-validate), never the project's:

    python manifests.py ROOT [KUSTOMIZATION_DIR ...]

Prints one line per target and per problem; exits 1 on any problem.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import yaml

STRIMZI_GROUP = "kafka.strimzi.io/"
# An older release a cluster may still run, and the newest kubernetes-validate 1.37 bundles: an
# API version or field that one of them lacks fails the check.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")


def build(target: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["kustomize", "build", str(target)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{target}: kustomize build failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def core_problems(docs: list[dict[str, Any]]) -> list[str]:
    core = [d for d in docs if not str(d.get("apiVersion", "")).startswith(STRIMZI_GROUP)]
    problems: list[str] = []
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump_all(core, f)
        f.flush()
        for version in KUBERNETES_VERSIONS:
            out = subprocess.run(
                ["kubernetes-validate", "--strict", "--quiet", "-k", version, f.name],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
                problems += [f"Kubernetes {version}: {line}" for line in lines or [f"exit {out.returncode}"]]
    return problems


def strimzi_problems(docs: list[dict[str, Any]], fields: dict[str, Any]) -> list[str]:
    problems = []
    for doc in docs:
        if not str(doc.get("apiVersion", "")).startswith(STRIMZI_GROUP):
            continue
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        schema = fields["kinds"].get(kind)
        if schema is None:
            problems.append(f"{kind}/{name}: a Strimzi kind with no field list in containers/strimzi/fields.yaml")
            continue
        validator = jsonschema.Draft202012Validator({"$defs": fields["$defs"], **schema})
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{kind}/{name}: {path or '(root)'}: {error.message}")
    return problems


def unmatched_patches(target: Path, docs: list[dict[str, Any]]) -> list[str]:
    """kustomize applies a patch whose target matches nothing to nothing, without a word: an
    overlay patching a renamed resource would silently stop doing its job."""
    kustomization = yaml.safe_load((target / "kustomization.yaml").read_text()) or {}
    problems = []
    for patch in kustomization.get("patches", []):
        wanted = patch.get("target")
        if not wanted:
            continue
        hits = [
            d
            for d in docs
            if ("kind" not in wanted or d.get("kind") == wanted["kind"])
            and ("name" not in wanted or d.get("metadata", {}).get("name") == wanted["name"])
        ]
        if not hits:
            problems.append(f"patch target {wanted} matches no resource")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1])
    targets = [Path(t) for t in argv[2:]] or [
        root / "deploy" / "base",
        *sorted(p.parent for p in (root / "deploy" / "overlays").glob("*/kustomization.yaml")),
    ]
    fields = yaml.safe_load((root / "containers" / "strimzi" / "fields.yaml").read_text())
    failed = False
    for target in targets:
        docs = build(target)
        problems = unmatched_patches(target, docs) + core_problems(docs) + strimzi_problems(docs, fields)
        kinds = sorted({str(d.get("kind")) for d in docs})
        print(f"{target}: {len(docs)} resources ({', '.join(kinds)}): {'ok' if not problems else 'FAILED'}")
        for p in problems:
            print(f"  {p}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
