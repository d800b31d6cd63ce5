"""The export command writes saved intakes as owner-only JSON documents: all, one, or a date range."""

import asyncio
import json
import stat
from datetime import UTC, datetime, timedelta

import pytest

from config import Settings, get_settings
from services.storage import export
from services.storage.runtime import open_storage
from tests.storage_support import scenario_record, scenario_turns, seed

pytestmark = pytest.mark.integration


async def test_export_writes_each_saved_intake_as_a_private_json_document(
    database_url, tmp_path, monkeypatch
):
    settings = Settings(_env_file=None, DATABASE_URL=database_url, DATA_DIR=tmp_path / "data")  # type: ignore[call-arg]
    storage = await open_storage(settings, purge=False)
    try:
        may = await seed(storage.store, "medications_allergy", started_at=datetime(2026, 5, 4, 9, tzinfo=UTC))
        june = await seed(storage.store, "simple_visit", started_at=datetime(2026, 6, 1, 9, tzinfo=UTC))
        await seed(storage.store, "simple_visit", practice=True)
        await seed(storage.store, status="in_progress")  # no record yet: nothing to export
    finally:
        await storage.close()

    out = tmp_path / "out"
    written = await export.export(settings, out)
    assert sorted(p.stem for p in written) == sorted([may, june])
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    document = json.loads((out / f"{may}.json").read_text())
    assert stat.S_IMODE((out / f"{may}.json").stat().st_mode) == 0o600
    assert document["record"] == scenario_record("medications_allergy").model_dump(mode="json")
    assert document["conversation"] == [t.model_dump() for t in scenario_turns("medications_allergy")]
    assert document["intake_completed"] is True and document["validation_warnings"] == []
    assert [v["version"] for v in document["versions"]] == [1]

    ranged = await export.export(
        settings,
        tmp_path / "range",
        since=datetime(2026, 5, 1, tzinfo=UTC),
        until=datetime(2026, 5, 5, tzinfo=UTC),
    )
    assert [p.stem for p in ranged] == [may]
    single = await export.export(settings, tmp_path / "one", intake_id=june)
    assert [p.stem for p in single] == [june]
    assert len(await export.export(settings, tmp_path / "practice", practice=True)) == 1
    audited = await export.export(settings, tmp_path / "audit", intake_id=may, audit=True)
    assert [p.name for p in audited] == [f"{may}.json", "audit.jsonl"]
    events = [json.loads(line) for line in (tmp_path / "audit" / "audit.jsonl").read_text().splitlines()]
    # The session's own event, then each export of this intake (audited like a staff read).
    assert events[0]["event"] == "session_start" and events[0]["session_id"] == may
    assert {e["event"] for e in events[1:]} == {"export"} and all(
        e["staff"].startswith("export:") for e in events[1:]
    )


def test_export_command_line_parses_days(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    try:
        asyncio.run(_migrated(tmp_path))
        assert (
            export.main(["--since", "2026-01-01", "--until", "2026-01-02", "--out", str(tmp_path / "x")]) == 0
        )
    finally:
        get_settings.cache_clear()
    assert "wrote 0 file(s)" in capsys.readouterr().err
    assert export._day("2026-01-02") == datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=1)


async def _migrated(tmp_path):
    storage = await open_storage(Settings(_env_file=None, DATA_DIR=tmp_path / "data"), purge=False)  # type: ignore[call-arg]
    await storage.close()
