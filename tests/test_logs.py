import io
import json
import logging
import time

import pytest

from relay.keys import mask
from relay.logs import BATCH_LINES, BatchingHandler, TextFormatter, configure
from tests.conftest import UNIX, make_key, trigger


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
    logging.getLogger().handlers[0].flush()
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


def batching(flush_s: float = 0) -> tuple[logging.Logger, BatchingHandler, io.StringIO]:
    out = io.StringIO()
    handler = BatchingHandler(out, flush_s=flush_s)
    handler.setFormatter(TextFormatter("ingress"))
    logger = logging.getLogger(f"relay.test.batch{id(out)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, handler, out


def test_info_lines_wait_for_a_batch_and_a_warning_writes_them_in_order() -> None:
    logger, handler, out = batching()
    logger.info("accepted one")
    logger.info("accepted two")
    assert out.getvalue() == ""
    logger.warning("retrying")
    lines = out.getvalue().splitlines()
    assert [line.split(" | ")[-1] for line in lines] == ["accepted one", "accepted two",
                                                         "retrying"]
    for n in range(BATCH_LINES):
        logger.info("accepted %d", n)
    assert len(out.getvalue().splitlines()) == 3 + BATCH_LINES  # a full batch is written
    logger.info("last")
    handler.close()
    assert out.getvalue().splitlines()[-1].endswith("| last")


def test_info_lines_are_written_within_the_flush_interval() -> None:
    logger, handler, out = batching(flush_s=0.05)
    logger.info("accepted")
    deadline = time.monotonic() + 5
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    handler.close()
    assert out.getvalue().endswith("| accepted\n")


def test_a_client_cannot_forge_a_log_line_or_hide_text(capsys, client) -> None:
    configure("ingress", "INFO", "text")
    forged = "x\n2026-11-25T00:00:00.000Z | ERROR | worker | dead-lettered everything"
    hidden = "y\x1b[8mnothing to see"
    for dedup_key in (forged, hidden):
        assert client.post("/v2/enqueue", json=trigger(dedup_key=dedup_key)).status_code == 202
    logging.getLogger().handlers[0].flush()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines  # one line per accepted event, none forged
    assert all(line.split(" | ")[1] == "INFO" for line in lines)
    assert "\\n2026-11-25T00:00:00.000Z | ERROR" in lines[0] and "\\x1b[8m" in lines[1]
    assert "\x1b" not in "".join(lines)


def test_a_huge_message_is_cut(capsys) -> None:
    configure("ingress", "INFO", "json")
    logging.getLogger("relay.test").info("got %s", "z" * 100_000)
    logging.getLogger().handlers[0].flush()
    entry = json.loads(capsys.readouterr().err)
    assert len(entry["message"]) < 2100 and "more characters" in entry["message"]


def test_each_accepted_event_names_its_client_and_request_id(capsys, client) -> None:
    configure("ingress", "INFO", "text")
    client.post("/v2/enqueue", json=trigger(dedup_key="who"),
                headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7",
                         "X-Request-ID": "req-42"}, environ_base=UNIX)  # from our nginx
    logging.getLogger().handlers[0].flush()
    line = capsys.readouterr().err.strip()
    # nginx appends the address it saw: the last one, not what the client claimed
    assert "dedup_key=who" in line and "client=198.51.100.7 rid=req-42" in line



def _lines_run(scrubber: logging.Filter, text: str) -> int:
    """How many Python lines scrubbing ``text`` runs (a count, not a time)."""
    import sys

    count = 0

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal count
        count += event == "line"
        return tracer

    record = logging.LogRecord("t", logging.INFO, "f", 1, "%s", (text,), None)
    sys.settrace(tracer)
    try:
        scrubber.filter(record)
    finally:
        sys.settrace(None)
    return count


def test_scrubbing_a_line_does_not_go_through_every_key() -> None:
    """A line is scrubbed with work that does not grow with the keys (hundreds of keys,
    a line per event), and a key is still caught anywhere: alone, inside a longer word,
    twice, next to another key; 31 of its characters are not a key."""
    from relay.logs import KeyScrubber

    many = [make_key() for _ in range(1000)]
    few, lots = KeyScrubber(many[:3]), KeyScrubber(many)
    for text in ("accepted trigger dedup_key=abc key=key-1 route=default", f"x {many[1]} y"):
        assert _lines_run(lots, text) == _lines_run(few, text)
    one, two = many[7], many[999]
    for text in (f"key {one} here", f"x{one}{two}y", f"{one}.{one}", one, f"{one[:31]} ok"):
        record = logging.LogRecord("t", logging.INFO, "f", 1, "msg %s", (text,), None)
        assert lots.filter(record)
        message = record.getMessage()
        assert one not in message and two not in message
        if text == f"{one[:31]} ok":
            assert message == f"msg {one[:31]} ok"
        else:
            assert mask(one) in message


def test_each_line_has_its_own_records_time_to_the_millisecond() -> None:
    """The second's text is made once and reused: a line of another second (later, or
    earlier from a slower thread) still shows its own."""
    formatter = TextFormatter("ingress")
    for created in (1_700_000_000.25, 1_700_000_001.5, 1_700_000_000.75, 1_700_000_001.999):
        record = logging.LogRecord("t", logging.INFO, "f", 1, "m", None, None)
        record.created, record.msecs = created, (created % 1) * 1000
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        assert formatter.format(record).split(" | ")[0] == \
            f"{expected}.{int(record.msecs):03d}Z"
