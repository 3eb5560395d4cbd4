"""The Watchdog's harness (relay/stack/prometheus.py): its configurations are what
Prometheus's and the Alertmanager's own checkers accept, and everything listens on
loopback only (no gossip port)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from relay.stack.prometheus import Alertmanager, Prometheus

PROMTOOL, AMTOOL = shutil.which("promtool"), shutil.which("amtool")


def harness(tmp_path: Path) -> tuple[Alertmanager, Prometheus]:
    logs = tmp_path / "logs"
    logs.mkdir()
    alertmanager = Alertmanager("prometheus-alertmanager", tmp_path, logs, {},
                                "http://127.0.0.1:9/adapters/alertmanager", "pdr_secret")
    return alertmanager, Prometheus("prometheus", tmp_path, logs, {},
                                    f"127.0.0.1:{alertmanager.port}")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus) is not installed")
def test_prometheus_config_and_the_watchdog_rule_pass_promtool(tmp_path: Path) -> None:
    _, prometheus = harness(tmp_path)
    checked = subprocess.run([str(PROMTOOL), "check", "config", str(prometheus.config)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rules found" in checked.stdout + checked.stderr


@pytest.mark.skipif(AMTOOL is None, reason="amtool (prometheus-alertmanager) is not installed")
def test_alertmanager_config_passes_amtool_and_keeps_its_credentials_private(
        tmp_path: Path) -> None:
    alertmanager, _ = harness(tmp_path)
    checked = subprocess.run([str(AMTOOL), "check-config", str(alertmanager.config)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert alertmanager.config.stat().st_mode & 0o077 == 0  # it holds the API key


def test_both_listen_on_loopback_only_and_the_alertmanager_gossips_nowhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []

    class Recorded:
        def __init__(self, name: str, argv: list[str], *args: object) -> None:
            started.append(argv)

    monkeypatch.setattr("relay.stack.prometheus.Process", Recorded)
    monkeypatch.setattr("relay.stack.prometheus.wait_until", lambda *args, **kw: True)
    alertmanager, prometheus = harness(tmp_path)
    alertmanager.start()
    prometheus.start()
    listen = [arg for argv in started for arg in argv if "listen-address=" in arg]
    assert sorted(listen) == sorted([
        f"--web.listen-address=127.0.0.1:{alertmanager.port}", "--cluster.listen-address=",
        f"--web.listen-address=127.0.0.1:{prometheus.port}"])
    assert "--rules.alert.resend-delay=1s" in started[1]
    assert all(str(tmp_path) in arg for argv in started for arg in argv
               if arg.startswith(("--storage.", "--config.")))
