"""``scripts/drill --only failover``'s own pieces: skipped with its reason where it cannot
run (not root), exit status 2 as the tools' "skipped"; what fails a scenario."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import drill  # noqa: E402
import failover  # noqa: E402


def row(**changes: object) -> dict[str, object]:
    clean: dict[str, object] = {"lost": 0, "order violations": 0, "misrouted": 0,
                                "over limit": 0, "unexpected answers": 0}
    return clean | changes


def test_not_root_the_failover_drill_says_why_and_exits_skipped(monkeypatch, capsys) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sys, "argv", ["drill", "--only", "failover"])
    assert drill.main() == 2
    assert "failover: skipped: it makes network namespaces, which needs root" in \
        capsys.readouterr().out


def test_without_ip_it_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(drill.shutil, "which", lambda *a, **k: None)
    assert "iproute2" in drill.failover_skipped()


def test_the_failover_drill_is_in_the_default_list() -> None:
    assert "failover" in drill.DRILLS


@pytest.mark.parametrize("change", [{"lost": 1}, {"order violations": 2}, {"misrouted": 1},
                                    {"over limit": 1}, {"unexpected answers": 1},
                                    {"rejoined as replica (s)": "no"}])
def test_a_scenario_fails_on(change: dict[str, object]) -> None:
    assert not failover.failed(row(**{"rejoined as replica (s)": "3"}))
    assert failover.failed(row(**change))
