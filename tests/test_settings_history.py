"""The history's settings when PostgreSQL keeps the record (RELAY_HISTORY_DSN): its own
defaults, each overridable, and the DSN's password never in a problem's text."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.errors import ConfigError
from relay.keys import new_key
from relay.settings import Settings

DSN = "postgresql://relay:s3cret@db.example:5432/relay"


def env(tmp_path: Path, **more: str) -> dict[str, str]:
    keys = tmp_path / "keys.txt"
    keys.write_text(new_key() + "\n")
    keys.chmod(0o600)
    return {"RELAY_KEYS_FILE": str(keys), **more}


def test_without_the_record_the_stream_keeps_a_week_in_24_mb(tmp_path: Path) -> None:
    settings = Settings.from_env(env(tmp_path))
    assert (settings.history_days, settings.history_max_mb) == (7.0, 24.0)


def test_with_the_record_90_days_and_a_stream_that_holds_a_burst(tmp_path: Path) -> None:
    """Each accepted step then carries its event: 100,000 events took ~40 MB of stream,
    and 24 MB lost 16-29% of such a burst from the record (docs/BENCHMARKS.md)."""
    settings = Settings.from_env(env(tmp_path, RELAY_HISTORY_DSN=DSN))
    assert (settings.history_days, settings.history_max_mb) == (90.0, 128.0)


def test_each_default_can_be_given(tmp_path: Path) -> None:
    settings = Settings.from_env(env(tmp_path, RELAY_HISTORY_DSN=DSN, RELAY_HISTORY_DAYS="30",
                                     RELAY_HISTORY_MAX_MB="48"))
    assert (settings.history_days, settings.history_max_mb) == (30.0, 48.0)


def test_a_bad_dsn_is_named_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as found:
        Settings.from_env(env(tmp_path, RELAY_HISTORY_DSN="mysql://relay:s3cret@db/relay"))
    assert "RELAY_HISTORY_DSN" in str(found.value) and "s3cret" not in str(found.value)
