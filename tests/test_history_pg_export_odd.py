"""``pd-relay history export`` where an auditor's file already exists, or PostgreSQL goes
away mid-export."""

from __future__ import annotations

import stat

from tests.test_history_pg_export import recorded, run  # noqa: F401 (a fixture)


def test_an_existing_file_is_made_private(recorded, tmp_path) -> None:  # noqa: F811
    """The payloads must not stay readable by all because the file was there before (an
    earlier export, a touch): os.open's mode applies only to a file it creates."""
    settings, _ = recorded
    out = tmp_path / "audit.jsonl"
    out.write_text("old\n")
    out.chmod(0o644)
    assert run(settings, "--format", "jsonl", "--output", str(out)) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "old" not in out.read_text() and len(out.read_text().splitlines()) == 2
