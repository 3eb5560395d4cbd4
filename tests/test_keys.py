import os
from collections import Counter
from pathlib import Path

import pytest

from relay.keys import choose_key, key_id, mask, parse_keys, read_keys
from tests.conftest import make_key


def test_mask_shows_only_both_ends() -> None:
    key = "R0" + "x" * 26 + "a1b2"
    assert mask(key) == "R0…a1b2"
    assert "x" not in mask(key)
    assert mask("short") == "…rt"


def test_parse_keys_skips_blanks_and_comments() -> None:
    a, b = make_key(), make_key()
    found = parse_keys(["# keys", "", a + "  # prod", "   ", b])
    assert found.keys == (a, b)
    assert found.problems == [] and found.draining == frozenset()


def test_a_key_can_be_named_and_marked_drain_and_nothing_else() -> None:
    a, b, c, d, e = (make_key() for _ in range(5))
    found = parse_keys([a, f"{b} drain  # retiring", f"{c} payments", f"{d} db.prod-1 drain",
                        f"{e} two words drain"], "keys.txt")
    assert found.keys == (a, b, c, d) and found.draining == {b, d}
    assert found.names == ("key-1", "key-2", "payments", "db.prod-1")
    assert found.problems == ["keys.txt line 5: after the key, only a name and 'drain' may "
                              "follow (got 3 words)"]
    assert "every key is marked drain" in parse_keys([f"{a} drain"]).problems[0]


def test_a_key_name_is_a_short_word_used_once_and_never_a_key() -> None:
    a, b, c, d = (make_key() for _ in range(4))
    found = parse_keys([f"{a} db", f"{b} db", f"{c} {a}", f"{d} drain drain", f"{d} n/a"])
    assert found.keys == (a,) and len(found.problems) == 4
    assert "line 2: the name 'db' is taken by line 1" in found.problems[0]
    assert "not a key name" in found.problems[1] and a not in found.problems[1]
    assert "'drain' is not a key name" in found.problems[2]
    assert "'n/a' is not a key name" in found.problems[3]


def test_parse_keys_names_line_numbers_and_masks_keys() -> None:
    a = make_key()
    bad = a[:31] + "!"
    found = parse_keys([a, "", bad, a, "tooshort"], "keys.txt")
    keys, problems = found.keys, found.problems
    assert keys == (a,)
    assert len(problems) == 3
    assert problems[0].startswith("keys.txt line 3: ")
    assert "repeats line 1" in problems[1] and problems[1].startswith("keys.txt line 4")
    assert "line 5" in problems[2] and "got 8 characters" in problems[2]
    assert all(a not in p and bad not in p for p in problems)


def test_read_keys_refuses_a_file_without_keys(tmp_path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# nothing yet\n\n")
    found = read_keys(path)
    assert found.keys == () and "holds no routing key" in found.problems[0]
    assert "cannot read" in read_keys(tmp_path / "absent.txt").problems[0]


def test_key_id_is_stable_and_hides_the_key() -> None:
    key = make_key()
    assert key_id(key) == key_id(key)
    assert key not in key_id(key) and len(key_id(key)) == 16


def test_choose_key_is_stable_and_spreads_incidents() -> None:
    keys = [make_key() for _ in range(4)]
    picks = Counter(choose_key(keys, f"incident-{i}") for i in range(4000))
    assert set(picks) == set(keys)
    assert min(picks.values()) > 800
    backwards = list(reversed(keys))
    assert all(choose_key(keys, str(i)) == choose_key(backwards, str(i)) for i in range(100))


def test_choose_key_moves_only_the_removed_keys_incidents() -> None:
    keys = [make_key() for _ in range(4)]
    before = {i: choose_key(keys, str(i)) for i in range(1000)}
    after = {i: choose_key(keys[:3], str(i)) for i in range(1000)}
    moved = [i for i in before if before[i] != after[i]]
    assert moved and all(before[i] == keys[3] for i in moved)


def test_a_keys_file_root_lets_only_its_reader_read_is_not_exposed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started as root, the stack hands its service user the keys as a file of root's
    (0640) whose group is that user's own: no other user may read it, so it is no
    warning; a group others are in, or a mode others may read, still is."""
    from types import SimpleNamespace

    from relay import keys

    def found(mode: int, uid: int = 0, gid: int = 990) -> os.stat_result:
        return SimpleNamespace(st_mode=0o100000 | mode, st_uid=uid, st_gid=gid)  # type: ignore[return-value]

    monkeypatch.setattr(keys.os, "geteuid", lambda: 990)  # the service user reads it
    monkeypatch.setattr(keys.os, "getegid", lambda: 990)
    monkeypatch.setattr(keys.pwd, "getpwuid", lambda uid: SimpleNamespace(pw_name="pd-relay"))
    monkeypatch.setattr(keys, "group_of_one", lambda gid, name: name == "pd-relay")
    assert keys.granted_to_me(found(0o640))
    assert not keys.granted_to_me(found(0o644))  # others may read it
    assert not keys.granted_to_me(found(0o660))  # its group may change it
    assert not keys.granted_to_me(found(0o640, uid=1000))  # not root's: its owner may
    assert not keys.granted_to_me(found(0o640, gid=991))  # another group's
    monkeypatch.setattr(keys, "group_of_one", lambda gid, name: False)
    assert not keys.granted_to_me(found(0o640))  # a group others are in


def test_choose_key_makes_the_choice_earlier_releases_made() -> None:
    """Follow-ups of an incident the relay forgot go where its trigger went: the choice
    is the rendezvous of SHA-256(key_id NUL dedup_key), as v0.1.0 and v0.2.0 made it,
    however the function computes it."""
    import hashlib

    def earlier(keys: list[str], incident: str) -> str:
        return max(keys, key=lambda k: hashlib.sha256(f"{key_id(k)}\0{incident}".encode())
                   .digest())

    for size in (1, 2, 5, 40):
        keys = [make_key() for _ in range(size)]
        for n in range(300):
            incident = f"incident-{n}-é" if n % 7 else ""
            assert choose_key(keys, incident) == earlier(keys, incident)
