"""The lean record layout of migration 0005 (issue 16) beside the full one before it: rows of
either layout read back as the same records and verify the same."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from gateway.messagelog import tables
from gateway.messagelog.db import alembic_config
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.verify_db import verify_log
from tests import test_messagelog_store as store_tests
from tests.test_messagelog_store import (
    GATEWAY,
    NODE,
    Trust,
    append_all,
    make_record,
    signed_records,
    stamp_all,
    stored_chain,
)

# The storage tests' fixtures: one migrated database per backend, the CA and the TSA.
engine = store_tests.engine
log_url = store_tests.log_url
trust = store_tests.trust


def _full_layout(engine: sa.Engine) -> None:
    """Every row and blob rewritten in the layout of revision 0005 (what the log holds of records
    written before 0005): bodies, manifests, proofs and blobs in full, the lean columns NULL."""
    chain = stored_chain(engine)
    with engine.begin() as connection:
        for stored in chain:
            record = stored.record
            connection.execute(
                sa.update(tables.records)
                .where(tables.records.c.seq == stored.seq)
                .values(
                    message=record.message,
                    body_codec=None,
                    manifest=record.manifest,
                    proof_json=record.proof_json,
                    proof_steps=None,
                    log_signature_proof=stored.log_signature_proof_json,
                    log_signature_steps=None,
                    timestamp_proof=stored.timestamp_proof_json,
                )
            )
        blobs = {
            hashlib.sha256(data).digest(): data
            for stored in chain
            for data in (stored.record.signed_root_xml, stored.record.ocsp_response, stored.log_signature)
            if data is not None
        }
        for digest, data in blobs.items():
            connection.execute(
                sa.update(tables.blobs)
                .where(tables.blobs.c.sha256 == digest)
                .values(data=data, codec=None, ref_sha256=None)
            )
        connection.execute(sa.update(tables.timestamps).values(leaves=None))


async def test_lean_and_full_rows_read_back_as_the_same_records(engine: sa.Engine, trust: Trust) -> None:
    """A log upgraded to 0005 holds rows of both layouts: each reads as the record it was, and
    verifies the same (no stored hash, proof or signature changes with the layout)."""
    signer = RecordSigner(trust.signer_key, trust.signer_cert)
    batch = signed_records(trust, range(6))
    batch[2] = batch[2].without_body()
    await append_all(
        engine, [*batch, make_record(6, outcome="Server.ClientProxy.NetworkError")], record_signer=signer
    )
    await stamp_all(engine, trust)
    lean = stored_chain(engine)
    row = row_of_seq(engine, 1)
    assert row["proof_json"] is None and row["proof_steps"] is not None
    assert len(row["manifest"]) == 33 and row["body_codec"] == "zstd/d1"
    assert row["timestamp_proof"] == "" and row["log_signature_proof"] == ""
    assert [s.record for s in lean] == [*batch, make_record(6, outcome="Server.ClientProxy.NetworkError")]

    def verified() -> Any:
        return verify_log(
            engine, GATEWAY, NODE, trusted_cas=[trust.ca], verify_token=trust.verify_token(),
            require_record_signatures=True,
        )  # fmt: skip

    report = verified()
    assert report.ok and report.checked == 7 and report.tokens_verified == 1, report
    _full_layout(engine)
    assert row_of_seq(engine, 1)["proof_json"] == lean[0].record.proof_json
    assert stored_chain(engine) == lean
    assert verified() == report


def row_of_seq(engine: sa.Engine, seq: int) -> dict[str, Any]:
    with engine.connect() as connection:
        return dict(
            connection.execute(sa.select(tables.records).where(tables.records.c.seq == seq)).one()._mapping
        )


async def test_a_log_holding_lean_records_is_not_downgraded_below_them(
    log_url: str, engine: sa.Engine, trust: Trust
) -> None:
    """Revision 0005's code could not read them: the downgrade refuses instead of breaking the log."""
    await append_all(engine, signed_records(trust, range(2)))
    with pytest.raises(RuntimeError, match="lean layout"):
        command.downgrade(alembic_config(log_url), "0005")
    assert len(stored_chain(engine)) == 2
