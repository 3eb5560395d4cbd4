"""No routing key on a command line (issue 25): a worker is named by key id or key name;
``--routing-key KEY`` is refused, and what the stack writes never holds a key."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from relay.cli import _parser
from relay.keys import read_keys
from relay.stack.compose import override
from relay.stack.model import relay_programs
from relay.stack.options import StackOptions
from relay.stack.supervisor import render
from tests.conftest import make_key


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    listed = [make_key(), make_key()]
    path = tmp_path / "keys.txt"
    path.write_text(f"{listed[0]} primary\n{listed[1]}\n")
    path.chmod(0o600)
    monkeypatch.setenv("RELAY_KEYS_FILE", str(path))
    return path, listed


def test_the_worker_refuses_a_routing_key_on_its_command_line_and_names_the_other_ways(
        keys: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    from relay.settings import Settings
    from worker.command import _chosen

    _, listed = keys
    args = _parser().parse_args(["worker", "--routing-key", listed[0]])
    assert _chosen(Settings.from_env(), args) is None  # no worker starts
    err = capsys.readouterr().err
    assert "--key-id" in err and "--key NAME" in err and "ps" in err
    assert listed[0] not in err


@pytest.mark.parametrize("name, index", [("primary", 0), ("key-2", 1)])
def test_the_worker_takes_a_key_by_its_name(keys: tuple[Path, list[str]], name: str,
                                            index: int) -> None:
    from relay.settings import Settings
    from worker.command import _chosen

    _, listed = keys
    args = _parser().parse_args(["worker", "--key", name])
    assert _chosen(Settings.from_env(), args) == listed[index]


def test_an_unknown_key_name_is_refused(keys: tuple[Path, list[str]],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from relay.settings import Settings
    from worker.command import _chosen

    assert _chosen(Settings.from_env(), _parser().parse_args(["worker", "--key", "nope"])) \
        is None
    assert "no key named 'nope'" in capsys.readouterr().err


def test_no_command_line_the_stack_writes_holds_a_key(tmp_path: Path,
                                                      keys: tuple[Path, list[str]]) -> None:
    path, listed = keys
    found = read_keys(path)
    env = {"RELAY_KEYS_FILE": str(path)}
    programs = relay_programs(["pd-relay"], env, found, path, [8081, 8082], 8090)
    (tmp_path / "logs").mkdir()
    conf = render(programs, tmp_path, tmp_path)
    options = replace(StackOptions.from_env({}, tmp_path, euid=1000), keys_file=path)
    services = override(options, env, found)["services"]
    argvs = [list(p.argv) for p in programs] + [list(s.get("command", []))
                                                for s in services.values()]
    for key in listed:
        assert key not in conf
        assert not any(key in " ".join(map(str, argv)) for argv in argvs)
    workers = [argv for argv in argvs if "worker" in argv]
    assert len(workers) == 2 * 2  # two worker processes, in supervisord's and compose's
    for argv in workers:  # and the CLI takes each of them
        parsed = _parser().parse_args(argv[argv.index("worker"):])
        assert parsed.keys == "all" and parsed.key_id is None
