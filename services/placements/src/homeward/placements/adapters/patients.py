"""The only place Homeward keeps NHS numbers: ``patients``, encrypted, keyed by the reference.

Each row is one person: ``patient_ref`` (the keyed hash every other table and every event
uses), ``nhs_number_sealed`` (AES-256-GCM, :class:`~homeward.kit.crypto.NhsNumberCipher`),
``ref_key_id`` (which reference key made ``patient_ref``) and, after a rotation,
``previous_patient_ref``. The NHS number is kept so references can be made again with a new
key; nothing reads it into an event, a log or the API.

:func:`protect_patients` brings every row up to the configured keys: it seals a value still in
plain text (from before migration 0002), re-seals one sealed with
``HOMEWARD_NHS_NUMBER_KEY_PREVIOUS``, and re-keys a person whose reference was made with
another key than ``HOMEWARD_PATIENT_REF_KEY`` (their placements and repatriations follow).
The service runs it at start, before it consumes anything, and then every few minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
from homeward.kit.clock import Clock
from homeward.kit.crypto import NhsNumberCipher, key_id
from homeward.kit.logging import get_logger
from homeward.kit.pseudonym import Pseudonymiser

Conn: TypeAlias = asyncpg.Connection  # type: ignore[type-arg]

log = get_logger(__name__)


@dataclass(frozen=True)
class PatientKeys:
    """The two keys that protect a person's identity, and what they do."""

    pseudonymiser: Pseudonymiser
    cipher: NhsNumberCipher

    @property
    def ref_key_id(self) -> str:
        return key_id(self.pseudonymiser.key.encode())


async def _lock(conn: Conn, ref: str) -> None:
    # The lock the handlers take for a person (handlers.patient_key), so re-keying and
    # repatriation matching for one person never interleave.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"patient:{ref}")


async def rekey(conn: Conn, old: str, new: str) -> bool:
    """Move a person from reference ``old`` to ``new``: their placements and repatriations
    follow, and ``old`` is kept as ``previous_patient_ref``. False if nobody had ``old``."""
    if old == new or await conn.fetchval("SELECT 1 FROM patients WHERE patient_ref = $1", old) is None:
        return False
    if await conn.fetchval("SELECT 1 FROM patients WHERE patient_ref = $1", new) is None:
        # ON UPDATE CASCADE moves placements.patient_ref with it.
        await conn.execute(
            "UPDATE patients SET patient_ref = $2, previous_patient_ref = $1 WHERE patient_ref = $1", old, new
        )
    else:  # both exist (a replica on the old key added the person again): merge into ``new``
        await conn.execute("UPDATE placements SET patient_ref = $2 WHERE patient_ref = $1", old, new)
        await conn.execute("DELETE FROM patients WHERE patient_ref = $1", old)
        await conn.execute("UPDATE patients SET previous_patient_ref = $1 WHERE patient_ref = $2", old, new)
    await conn.execute("UPDATE repatriations SET patient_ref = $2 WHERE patient_ref = $1", old, new)
    return True


async def add_patient(conn: Conn, keys: PatientKeys, patient_ref: str, nhs_number: str) -> None:
    """Record the person behind ``patient_ref`` (made with the current key), once; a row made
    under the previous key for the same person is re-keyed first, so look-ups by the current
    reference find their earlier placements."""
    old = keys.pseudonymiser.previous_ref(nhs_number)
    if old is not None:
        await rekey(conn, old, patient_ref)
    await conn.execute(
        """INSERT INTO patients (patient_ref, nhs_number_sealed, ref_key_id) VALUES ($1, $2, $3)
           ON CONFLICT (patient_ref) DO NOTHING""",
        patient_ref,
        keys.cipher.seal(nhs_number),
        keys.ref_key_id,
    )


async def protect_patients(pool: asyncpg.Pool, keys: PatientKeys, batch_size: int = 200) -> int:  # type: ignore[type-arg]
    """Seal, re-seal and re-key every row not yet under the configured keys; how many changed.

    Works in batches of ``batch_size`` rows, each in its own transaction, skipping rows another
    replica is working on (``SKIP LOCKED``); a row sealed by a key that is neither the current
    nor the previous NHS number key stops it with an error naming the variables.
    """
    ref_kid = keys.ref_key_id
    nhs_kid = bytes.fromhex(keys.cipher.current_id)
    changed = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT patient_ref, nhs_number, nhs_number_sealed FROM patients
                   WHERE nhs_number IS NOT NULL
                      OR ref_key_id IS DISTINCT FROM $1
                      OR substring(nhs_number_sealed FROM 2 FOR 4) <> $2
                   ORDER BY patient_ref LIMIT $3 FOR UPDATE SKIP LOCKED""",
                ref_kid,
                nhs_kid,
                batch_size,
            )
            if not rows:
                break
            for row in rows:
                await _protect(conn, keys, row)
            changed += len(rows)
    if changed:
        log.info("patients brought up to the configured keys", rows=changed, ref_key_id=ref_kid)
    return changed


async def _protect(conn: Conn, keys: PatientKeys, row: Any) -> None:
    plain = row["nhs_number"]
    nhs = plain if plain is not None else keys.cipher.open(row["nhs_number_sealed"])
    ref = keys.pseudonymiser.ref(nhs)
    await _lock(conn, ref)
    if row["patient_ref"] != ref:
        await rekey(conn, row["patient_ref"], ref)
    await conn.execute(
        "UPDATE patients SET nhs_number = NULL, nhs_number_sealed = $2, ref_key_id = $3 WHERE patient_ref = $1",
        ref,
        keys.cipher.seal(nhs),
        keys.ref_key_id,
    )


def protect_job(keys: PatientKeys) -> Any:
    """The job's ``run(pool, clock)``: it emits no events, so it reports 0."""

    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        await protect_patients(pool, keys)
        return 0

    return run
