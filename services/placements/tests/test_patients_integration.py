"""NHS numbers at rest, on the real Kafka and PostgreSQL: placements stores them encrypted
(nothing in its database holds one in plain text), seals what an earlier version left in plain
text, and re-keys people when a key is rotated, keeping their old reference during the changeover."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from homeward.kit.clock import FixedClock
from homeward.kit.crypto import NhsNumberCipher
from homeward.kit.db import create_pool, migrate
from homeward.kit.pseudonym import Pseudonymiser, patient_ref
from homeward.kit.service import ServiceRuntime
from homeward.kit.settings import CommonSettings
from homeward.placements.adapters.patients import PatientKeys, protect_patients
from homeward.placements.entrypoints.app import MIGRATIONS, build_definition
from homeward.placements.ports import Config
from homeward.placements.settings import PlacementsSettings
from homeward.testing import KafkaProbe, eventually, service_tuning
from placements_support import HOME, NHS_A, NHS_B, NHS_C, Register, event, handle_in_postgres, placement_made
from pydantic import SecretStr

REF_A, REF_B = "ref-key-a-" + "a" * 32, "ref-key-b-" + "b" * 32
NHS_KEY_A, NHS_KEY_B = "nhs-key-a-" + "c" * 32, "nhs-key-b-" + "d" * 32


def _keys(**keys: str) -> CommonSettings:
    values = {"patient_ref_key_previous": "", "nhs_number_key_previous": "", **keys}
    return CommonSettings.model_validate({k: SecretStr(v) for k, v in values.items()})


@contextlib.asynccontextmanager
async def placements(
    tmp_path: Path, database: str, kafka: KafkaProbe, common: CommonSettings
) -> AsyncIterator[ServiceRuntime]:
    settings = PlacementsSettings(
        database_url=database,
        reference_data=tmp_path / "reference.yaml",
        **service_tuning(kafka, "placements"),
        common=common,
    )
    runtime = ServiceRuntime(build_definition(settings), clock=FixedClock(dt.date(2026, 1, 5)))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def rows(database: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def whole_database(database: str) -> str:
    """Every row of every table, as text."""
    tables = await rows(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    out = []
    for t in tables:
        out += [str(r[0]) for r in await rows(database, f'SELECT t::text FROM "{t[0]}" t')]
    return "\n".join(out)


async def registered(database: str, n: int) -> bool:
    return len(await rows(database, "SELECT 1 FROM placements")) >= n


async def test_the_patients_table_holds_no_plain_nhs_number(
    tmp_path: Path, database: str, kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    await kafka.create(partners=[HOME])
    (tmp_path / "reference.yaml").write_text("commissioners:\n  - {code: 05A, area: 05A}\n")
    async with placements(tmp_path, database, kafka, _keys(patient_ref_key=REF_A, nhs_number_key=NHS_KEY_A)):
        await kafka.send(kafka.topics.partner(HOME), event(placement_made("PLC-1", nhs=NHS_A)))
        assert await eventually(lambda: registered(database, 1), timeout=60)

    [patient] = await rows(database, "SELECT * FROM patients")
    assert patient["nhs_number"] is None
    assert patient["patient_ref"] == patient_ref(NHS_A, REF_A)
    assert NhsNumberCipher(NHS_KEY_A).open(patient["nhs_number_sealed"]) == NHS_A
    everything = await whole_database(database)
    assert patient["patient_ref"] in everything  # the scan reads the rows
    for form in (NHS_A, f"{NHS_A[:3]} {NHS_A[3:6]} {NHS_A[6:]}", NHS_A.encode().hex()):
        assert form not in everything


async def test_keys_rotate_with_old_and_new_references_kept_during_the_changeover(
    tmp_path: Path, database: str, kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    await kafka.create(partners=[HOME])
    (tmp_path / "reference.yaml").write_text("commissioners:\n  - {code: 05A, area: 05A}\n")
    topic = kafka.topics.partner(HOME)
    first = _keys(patient_ref_key=REF_A, nhs_number_key=NHS_KEY_A)
    async with placements(tmp_path, database, kafka, first):
        await kafka.send(topic, event(placement_made("PLC-1", nhs=NHS_A)))
        assert await eventually(lambda: registered(database, 1), timeout=60)
    # A person recorded in plain text by a version before migration 0002, under another key.
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            "INSERT INTO patients (patient_ref, nhs_number) VALUES ($1, $2)", patient_ref(NHS_B, "old-key"), NHS_B
        )
    finally:
        await conn.close()

    # Both keys rotated: the service re-keys and re-seals everyone at start, before it consumes.
    rotated = _keys(
        patient_ref_key=REF_B,
        patient_ref_key_previous=REF_A,
        nhs_number_key=NHS_KEY_B,
        nhs_number_key_previous=NHS_KEY_A,
    )
    async with placements(tmp_path, database, kafka, rotated):
        people = {r["patient_ref"]: r for r in await rows(database, "SELECT * FROM patients")}
        assert set(people) == {patient_ref(NHS_A, REF_B), patient_ref(NHS_B, REF_B)}
        a, b = people[patient_ref(NHS_A, REF_B)], people[patient_ref(NHS_B, REF_B)]
        assert a["previous_patient_ref"] == patient_ref(NHS_A, REF_A)  # the old reference, kept
        assert a["nhs_number"] is None and b["nhs_number"] is None
        only_new = NhsNumberCipher(NHS_KEY_B)  # re-sealed: the previous key is no longer needed
        assert only_new.open(a["nhs_number_sealed"]) == NHS_A and only_new.open(b["nhs_number_sealed"]) == NHS_B
        [placed] = await rows(database, "SELECT patient_ref FROM placements")
        assert placed["patient_ref"] == patient_ref(NHS_A, REF_B)  # the placement followed its person

        # A new placement for the same person is recorded under the new key and linked to the first.
        await kafka.send(topic, event(placement_made("PLC-2", nhs=NHS_A, start="2026-01-06")))
        await kafka.send(topic, event(placement_made("PLC-3", nhs=NHS_C, start="2026-01-06")))
        assert await eventually(lambda: registered(database, 3), timeout=60)
        refs = {r["placement_id"]: r["patient_ref"] for r in await rows(database, "SELECT * FROM placements")}
        assert refs == {
            "PLC-1": patient_ref(NHS_A, REF_B),
            "PLC-2": patient_ref(NHS_A, REF_B),
            "PLC-3": patient_ref(NHS_C, REF_B),
        }
        assert len(await rows(database, "SELECT 1 FROM patients")) == 3


def _start_placements(**env: str) -> tuple[int, str]:
    """``python -m homeward.placements`` with the session's environment and ``env`` over it."""
    done = subprocess.run(
        [sys.executable, "-m", "homeward.placements"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def test_placements_refuses_to_start_with_the_development_key() -> None:
    code, output = _start_placements(HOMEWARD_PATIENT_REF_KEY="homeward-development-key-change-me")
    assert code == 1, output
    assert "cannot start" in output and "HOMEWARD_PATIENT_REF_KEY" in output and "development key" in output
    assert "Traceback" not in output


def test_placements_refuses_to_start_without_the_key_for_nhs_numbers() -> None:
    code, output = _start_placements(HOMEWARD_PATIENT_REF_KEY=REF_A, HOMEWARD_NHS_NUMBER_KEY="")
    assert code == 1, output
    assert "HOMEWARD_NHS_NUMBER_KEY is not set" in output and "Traceback" not in output


async def test_a_person_added_under_the_old_key_during_a_rolling_restart_is_merged(database: str) -> None:
    """A replica not yet restarted (old key) records a person the new replica has already
    re-keyed: the job merges the two rows, and both placements end under the new reference."""
    await migrate(database, "placements", MIGRATIONS)
    pool = await create_pool(database, 1, 2)
    wiring = Register()
    clock = FixedClock(dt.date(2026, 1, 5))
    old = PatientKeys(Pseudonymiser(REF_A), NhsNumberCipher(NHS_KEY_A))
    new = PatientKeys(Pseudonymiser(REF_B, previous=REF_A), NhsNumberCipher(NHS_KEY_A))

    def replica(keys: PatientKeys) -> tuple[Config, PatientKeys]:
        return dataclasses.replace(wiring.config, patient_ref_key=keys.pseudonymiser.key), keys

    async def handle(config_keys: tuple[Config, PatientKeys], e: Any) -> None:
        await handle_in_postgres(pool, *config_keys, e, clock)

    try:
        await handle(replica(old), event(placement_made("PLC-1", nhs=NHS_A)))
        assert await protect_patients(pool, new) == 1  # the new replica starts: re-keyed
        await handle(replica(old), event(placement_made("PLC-2", nhs=NHS_A, start="2026-01-06")))
        assert {r["patient_ref"] for r in await rows(database, "SELECT * FROM patients")} == {
            patient_ref(NHS_A, REF_A),
            patient_ref(NHS_A, REF_B),
        }
        assert await protect_patients(pool, new) == 1
        [person] = await rows(database, "SELECT * FROM patients")
        assert (person["patient_ref"], person["previous_patient_ref"]) == (
            patient_ref(NHS_A, REF_B),
            patient_ref(NHS_A, REF_A),
        )
        placed = await rows(database, "SELECT placement_id, patient_ref FROM placements ORDER BY 1")
        assert [(r[0], r[1]) for r in placed] == [
            ("PLC-1", patient_ref(NHS_A, REF_B)),
            ("PLC-2", patient_ref(NHS_A, REF_B)),
        ]
        assert await protect_patients(pool, new) == 0  # nothing left to do
    finally:
        await pool.close()
