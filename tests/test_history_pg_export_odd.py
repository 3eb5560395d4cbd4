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


def test_postgresql_gone_mid_export_is_said_not_a_traceback(recorded, tmp_path, capsys,  # noqa: F811
                                                             monkeypatch) -> None:
    import psycopg

    from relay.commands import history_export

    settings, _ = recorded
    rows = history_export.rows

    def cut(*args: object, **kwargs: object):
        found = rows(*args, **kwargs)  # type: ignore[arg-type]
        yield next(found)
        raise psycopg.OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(history_export, "rows", cut)
    out = tmp_path / "audit.csv"
    assert run(settings, "--output", str(out)) == 1
    err = capsys.readouterr().err
    assert "terminating connection" in err and "after 1 event(s)" in err
    assert "Traceback" not in err
