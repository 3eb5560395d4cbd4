"""The README's Heartbeats snippets, copied as an on-call engineer would copy them: each
``heartbeats:`` example passes the routes checker (with the sources, channels, routes
and keys it names), the Watchdog's Prometheus rule passes ``promtool check rules`` and
its Alertmanager configuration ``amtool check-config`` (Debian's tools; skipped where
they are not installed)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from relay.auth import digest, new_token
from relay.routes.config import load

README = Path(__file__).resolve().parent.parent / "README.md"
PROMTOOL, AMTOOL = shutil.which("promtool"), shutil.which("amtool")

# what the snippets name and a user has defined elsewhere in the file
CONTEXT = """
sources:
  - {name: backups, api_keys: ["%s"]}
  - {name: backup-host, api_keys: ["%s"]}
  - {name: alertmanager, api_keys: ["%s"]}
channels:
  - {name: ops-slack, type: slack, url: "https://hooks.example.com/x"}
routes:
  - {name: ops, keys: [ops], channels: [ops-slack]}
"""


def section(title: str) -> str:
    """The README's text from the heading ``title`` to the next heading (a ``#`` line
    inside a code block is a comment, not a heading)."""
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^##+ )", text, re.M | re.S)
    assert found, f"the README has a section {title!r}"
    return found.group(1)


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)


def heartbeat_examples() -> list[str]:
    found = [block for title in ("Heartbeats", "Heartbeat checks: fields, states and commands")
             for block in yaml_blocks(section(title)) if block.startswith("heartbeats:")]
    assert len(found) == 2, "the README's two heartbeats: examples"
    return found


@pytest.mark.parametrize("index", [0, 1])
def test_the_readme_heartbeats_examples_pass_the_routes_checker(
        index: int, tmp_path: Path) -> None:
    example = heartbeat_examples()[index]
    path = tmp_path / "pd_routes.yml"
    path.write_text(CONTEXT % tuple(digest(new_token()[0]) for _ in range(3)) + example)
    path.chmod(0o600)
    checks = load(path, ("ops", "db")).heartbeats
    names = [entry["name"] for entry in yaml.safe_load(example)["heartbeats"]]
    assert [check.name for check in checks] == names and len(names) == 2


def watchdog_blocks() -> dict[str, str]:
    blocks = yaml_blocks(section("Heartbeats"))
    rules = [block for block in blocks if block.startswith("groups:")]
    alertmanager = [block for block in blocks if block.startswith(("route:", "global:"))]
    assert len(rules) == 1 and len(alertmanager) == 1, "the Watchdog recipe's two snippets"
    return {"rules": rules[0], "alertmanager": alertmanager[0]}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus) is not installed")
def test_the_readme_watchdog_rule_passes_promtool(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(watchdog_blocks()["rules"])
    checked = subprocess.run([str(PROMTOOL), "check", "rules", str(path)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rules found" in checked.stdout + checked.stderr


@pytest.mark.skipif(AMTOOL is None, reason="amtool (prometheus-alertmanager) is not installed")
def test_the_readme_watchdog_alertmanager_config_passes_amtool_as_written(
        tmp_path: Path) -> None:
    """Found following the recipe: the snippet had no receiver on its root route, which
    Alertmanager refuses to load ("root route must specify a default receiver")."""
    path = tmp_path / "alertmanager.yml"
    path.write_text(watchdog_blocks()["alertmanager"])
    checked = subprocess.run([str(AMTOOL), "check-config", str(path)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(path.read_text())
    [watchdog] = [route for route in config["route"]["routes"]
                  if route.get("matchers") == ['alertname="Watchdog"']]
    [receiver] = [found for found in config["receivers"]
                  if found["name"] == watchdog["receiver"]]
    assert receiver["webhook_configs"][0]["url"].endswith("/adapters/alertmanager")


def test_the_readme_heartbeat_commands_parse_with_every_option_they_show() -> None:
    """Each ``pd-relay heartbeat`` line of the reference parses as written with all its
    ``[...]`` options given (found: the ``add`` line offered ``[--cron ...]`` beside
    ``--period``, which ``add`` refuses together)."""
    from relay import cli

    block = re.search(r"^```sh\n(pd-relay heartbeat add .*?)^```",
                      section("Heartbeat checks: fields, states and commands"), re.M | re.S)
    assert block, "the reference's commands"
    lines = re.sub(r"\\\n\s*", " ", block.group(1)).splitlines()
    parsed = 0
    for line in lines:
        words = shlex.split(line.replace("[", " ").replace("]", " "), comments=True)
        if not words or words[:2] != ["pd-relay", "heartbeat"]:
            continue
        words = [word for word in words if word != "..."]
        words = [word.replace("NAME", "backup").replace("TEXT", "Backup silent")
                 for word in words]
        cli._parser().parse_args(words[1:])  # argparse exits on a refusal
        parsed += 1
    assert parsed >= 6
