"""Reading a recipients file (CSV with a header row, or YAML: a list of mappings, or a mapping
with a ``recipients`` list), keeping each row's line number for error reports."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml


class UnreadableFile(ValueError):
    pass


def read_rows(path: Path) -> list[tuple[int, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".yaml", ".yml"):
        return _yaml_rows(text)
    if path.suffix.lower() == ".csv":
        return _csv_rows(text)
    raise UnreadableFile(f"{path.name}: the file must end in .csv, .yaml or .yml")


def _csv_rows(text: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
        raise UnreadableFile("the CSV header must name at least: email, org, role")
    rows: list[tuple[int, Any]] = []
    for row in reader:
        cleaned = {(k or "").strip().lower(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        if any(cleaned.values()):
            rows.append((reader.line_num, cleaned))
    return rows


def _yaml_rows(text: str) -> list[tuple[int, Any]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise UnreadableFile(f"not valid YAML: {exc}") from exc
    if root is None:
        return []
    if isinstance(root, yaml.MappingNode):
        items = [v for k, v in root.value if k.value == "recipients"]
        if not items:
            raise UnreadableFile("a YAML mapping must have a 'recipients' list")
        root = items[0]
    if not isinstance(root, yaml.SequenceNode):
        raise UnreadableFile("the YAML must be a list of recipients")
    rows: list[tuple[int, Any]] = []
    for node in root.value:
        line = node.start_mark.line + 1
        rows.append((line, _construct(node)))
    return rows


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()
