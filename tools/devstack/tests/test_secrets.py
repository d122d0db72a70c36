"""The native stack's keys: random, one set per checkout, readable by their owner only."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from homeward.devstack.config import StackConfig
from homeward.devstack.secrets import KEYS, ensure_secrets, read_secrets, secrets_dir
from homeward.kit.crypto import check_key


def _checkout(path: Path) -> StackConfig:
    (path / "stack" / "kafka").mkdir(parents=True)
    (path / "stack" / "kafka" / "pom.xml").write_text("<project/>")
    return StackConfig.load(path)


def test_each_key_is_made_once_per_checkout_random_and_private(tmp_path: Path) -> None:
    one, two = _checkout(tmp_path / "one"), _checkout(tmp_path / "two")
    assert read_secrets(one) == {}
    keys = ensure_secrets(one)
    assert set(keys) == set(KEYS)
    for name, value in keys.items():
        check_key(name, value)  # long enough, not the development key
    assert len(set(keys.values())) == len(keys)
    assert ensure_secrets(one) == keys == read_secrets(one)  # kept: the databases depend on them
    assert ensure_secrets(two) != keys  # another checkout, other keys
    folder = secrets_dir(one)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in KEYS.values():
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600


def test_an_empty_key_file_is_replaced(tmp_path: Path) -> None:
    cfg = _checkout(tmp_path)
    secrets_dir(cfg).mkdir(parents=True)
    (secrets_dir(cfg) / "patient-ref-key").write_text("")
    assert len(ensure_secrets(cfg)["HOMEWARD_PATIENT_REF_KEY"]) >= 32


def test_the_env_command_exports_the_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from homeward.devstack.cli import app
    from typer.testing import CliRunner

    cfg = _checkout(tmp_path)
    monkeypatch.setenv("HOMEWARD_STACK_ROOT", str(tmp_path))
    result = CliRunner().invoke(app, ["env"])
    assert result.exit_code == 0, result.output
    for name, value in read_secrets(cfg).items():
        assert f"export {name}={value}" in result.output


def test_the_staff_sign_in_key_is_made_once_and_given_to_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from homeward.devstack.cli import app
    from homeward.devstack.secrets import ensure_auth, read_auth
    from homeward.devstack.stack import StackInfo
    from homeward.kit.auth import AuthSettings, LocalSigner, TokenVerifier
    from typer.testing import CliRunner

    cfg = _checkout(tmp_path)
    assert read_auth(cfg) == {}
    env = ensure_auth(cfg)
    folder = secrets_dir(cfg)
    key = (folder / "auth-signing-key.pem").read_bytes()
    assert stat.S_IMODE((folder / "auth-signing-key.pem").stat().st_mode) == 0o600
    assert env == read_auth(cfg) == ensure_auth(cfg) and (folder / "auth-signing-key.pem").read_bytes() == key
    assert env["HOMEWARD_AUTH_JWKS"] == str(folder / "auth-jwks.json")
    settings = AuthSettings(
        issuer=env["HOMEWARD_AUTH_ISSUER"], audience=env["HOMEWARD_AUTH_AUDIENCE"], jwks=env["HOMEWARD_AUTH_JWKS"]
    )
    token = LocalSigner.from_file(folder / "auth-signing-key.pem").token(org="05A", role="case-manager")
    assert TokenVerifier(settings).verify(token).org == "05A"
    from homeward.contracts.access import service_principal

    # Kafka users as a stack that has formatted its broker would have them (no broker needed).
    info = dataclasses.replace(StackInfo.from_config(cfg), kafka_users={service_principal("placements"): "pw"})
    assert {k: v for k, v in info.service_env("placements").items() if k.startswith("HOMEWARD_AUTH_")} == env
    monkeypatch.setenv("HOMEWARD_STACK_ROOT", str(tmp_path))
    printed = CliRunner().invoke(app, ["env"])
    assert printed.exit_code == 0 and f"export HOMEWARD_AUTH_JWKS={env['HOMEWARD_AUTH_JWKS']}" in printed.output
