import json
import logging

import pytest

from relay.keys import mask
from relay.logs import configure
from tests.conftest import make_key


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_lines_are_time_level_component_message_with_keys_scrubbed(capsys) -> None:
    key = make_key()
    configure("worker", "INFO", "text", [key])
    logging.getLogger("relay.test").info("sending with key %s", key)
    line = capsys.readouterr().err.strip()
    time_part, level, component, message = line.split(" | ")
    assert time_part.endswith("Z") and level == "INFO" and component == "worker"
    assert message == f"sending with key {mask(key)}" and key not in line


def test_json_lines(capsys) -> None:
    key = make_key()
    configure("ingress", "DEBUG", "json", [key])
    logging.getLogger("relay.test").warning("bad %s", key)
    entry = json.loads(capsys.readouterr().err)
    assert entry["level"] == "WARNING" and entry["component"] == "ingress"
    assert entry["message"] == f"bad {mask(key)}"
