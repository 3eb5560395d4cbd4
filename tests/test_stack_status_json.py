"""``./start.sh status --json`` (``pd-relay stack status --json``): the README offers
status's ``--json`` beside ``./start.sh status``; the stack's status took no option, so
a user following it got ``unrecognized arguments: --json``. With it, the output is the
relay's ``status --json`` alone (no process table before it), for scripts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from relay.stack import command
from relay.stack.options import StackOptions
from relay.stack.record import Recorded


def recorded_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    monkeypatch.setenv("PD_RELAY_HOME", str(tmp_path))
    monkeypatch.setenv("PD_RELAY_SYSTEM_DIR", str(tmp_path / "system"))
    options = StackOptions.from_env(os.environ, tmp_path)
    options.state_dir.mkdir(parents=True)
    Recorded("native", options, {}).save()
    asked: list[list[str]] = []

    class Stack:
        def __init__(self, options: StackOptions) -> None:
            pass

        def status(self) -> bool:
            print("ingress-0   RUNNING")
            return True

    def relay(args: argparse.Namespace, home: Path) -> int:
        asked.append(list(args.args))
        print('{"keys": []}' if "--json" in args.args else "KEY  QUEUED")
        return 0

    monkeypatch.setattr(command, "NativeStack", Stack)
    monkeypatch.setattr(command, "_relay", relay)
    return asked


def test_status_json_prints_the_relays_status_json_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    asked = recorded_stack(tmp_path, monkeypatch)
    assert command.main(["status", "--json"]) == 0
    assert asked == [["status", "--json"]]
    assert capsys.readouterr().out == '{"keys": []}\n'


def test_status_without_json_shows_the_processes_then_the_relays_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    asked = recorded_stack(tmp_path, monkeypatch)
    assert command.main(["status"]) == 0
    assert asked == [["status"]]
    assert capsys.readouterr().out == "ingress-0   RUNNING\nKEY  QUEUED\n"
