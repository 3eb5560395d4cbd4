"""When a timing is muted, and until when (relay.routes.intervals.muted_until): across DST
changes both ways, month ends, leap years and negative days, checked against a minute by
minute oracle and on examples."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.routes.intervals import HORIZON_S, Spec, TimeInterval, muted, muted_until
from relay.routes.timing import Timing

BERLIN = ZoneInfo("Europe/Berlin")
ZONES = [UTC, BERLIN, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"),
         ZoneInfo("Asia/Kathmandu"), ZoneInfo("Pacific/Chatham"), ZoneInfo("America/Sao_Paulo"),
         ZoneInfo("Australia/Sydney")]


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def iso(seconds: float | None, zone: ZoneInfo = BERLIN) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, zone).isoformat()


def one(name: str, *specs: Spec) -> dict[str, TimeInterval]:
    return {name: TimeInterval(name, specs)}


NIGHTS = one("nights", Spec(times=((1320, 1440), (0, 420)), zone=BERLIN))


def test_a_night_in_berlin_ends_at_seven_local_time_on_both_sides_of_dst() -> None:
    timing = Timing(mute=("nights",))
    # Spring: 02:00 CET becomes 03:00 CEST on 2026-03-29; the night still ends at 07:00.
    assert iso(muted_until(timing, NIGHTS, at("2026-03-28T23:30:00+01:00"))) == \
        "2026-03-29T07:00:00+02:00"
    # Autumn: 03:00 CEST becomes 02:00 CET on 2026-10-25 (the hour is seen twice).
    assert iso(muted_until(timing, NIGHTS, at("2026-10-25T02:30:00+02:00"))) == \
        "2026-10-25T07:00:00+01:00"
    assert iso(muted_until(timing, NIGHTS, at("2026-10-25T02:30:00+01:00"))) == \
        "2026-10-25T07:00:00+01:00"
    assert muted_until(timing, NIGHTS, at("2026-10-25T12:00:00+01:00")) is None
    # 24:00 is the end of the day: 23:59 is muted, and so is the midnight after it.
    assert muted(timing, NIGHTS, at("2026-12-24T23:59:59+01:00"))
    assert muted(timing, NIGHTS, at("2026-12-25T00:00:00+01:00"))
    assert not muted(timing, NIGHTS, at("2026-12-24T21:59:59+01:00"))


def test_the_hour_a_spring_change_skips_ends_a_mute_that_ends_in_it() -> None:
    intervals = one("early", Spec(times=((60, 150),), zone=BERLIN))  # 01:00 to 02:30
    timing = Timing(mute=("early",))
    # 02:00 to 03:00 does not exist on 2026-03-29: the mute ends at 03:00 CEST.
    assert iso(muted_until(timing, intervals, at("2026-03-29T01:10:00+01:00"))) == \
        "2026-03-29T03:00:00+02:00"
    # In autumn 02:00 to 02:30 comes twice, and so does the mute's end.
    assert iso(muted_until(timing, intervals, at("2026-10-25T01:10:00+02:00"))) == \
        "2026-10-25T02:30:00+02:00"
    assert muted_until(timing, intervals, at("2026-10-25T02:40:00+02:00")) is None
    assert muted(timing, intervals, at("2026-10-25T02:10:00+01:00"))


def test_office_hours_active_intervals_mute_nights_and_weekends() -> None:
    office = one("office", Spec(times=((540, 1020),), weekdays=((1, 5),), zone=BERLIN))
    timing = Timing(active=("office",))
    friday_evening = at("2026-12-04T18:00:00+01:00")
    assert iso(muted_until(timing, office, friday_evening)) == "2026-12-07T09:00:00+01:00"
    assert muted_until(timing, office, at("2026-12-07T09:00:00+01:00")) is None
    # a mute interval inside the active one mutes too
    both = {**office, **one("lunch", Spec(times=((720, 780),), zone=BERLIN))}
    lunch = Timing(mute=("lunch",), active=("office",))
    assert iso(muted_until(lunch, both, at("2026-12-07T12:15:00+01:00"))) == \
        "2026-12-07T13:00:00+01:00"
    assert iso(muted_until(lunch, both, at("2026-12-04T16:00:00+01:00"))) is None


def test_negative_days_month_ends_and_leap_years() -> None:
    last = one("last", Spec(days_of_month=((-1, -1),)))
    timing = Timing(mute=("last",))
    assert iso(muted_until(timing, last, at("2028-02-29T10:00:00+00:00")), UTC) == \
        "2028-03-01T00:00:00+00:00"
    assert muted_until(timing, last, at("2027-02-28T10:00:00+00:00")) is not None
    assert muted_until(timing, last, at("2028-02-28T10:00:00+00:00")) is None
    # 31 in a short month holds on none of it; 29:31 clamps to the 29th in a leap February
    late = one("late", Spec(days_of_month=((31, 31),)), )
    assert muted_until(Timing(mute=("late",)), late, at("2026-04-30T10:00:00+00:00")) is None
    clamped = one("c", Spec(days_of_month=((29, 31),)))
    assert muted_until(Timing(mute=("c",)), clamped, at("2028-02-29T10:00:00+00:00")) == \
        at("2028-03-01T00:00:00+00:00")
    # the last three days of a month in Berlin, across its spring change
    tail = one("tail", Spec(days_of_month=((-3, -1),), zone=BERLIN))
    assert iso(muted_until(Timing(mute=("tail",)), tail, at("2026-03-29T12:00:00+02:00"))) == \
        "2026-04-01T00:00:00+02:00"


def test_a_mute_longer_than_the_horizon_is_said_to_last_to_it() -> None:
    never = one("y", Spec(years=((2099, 2099),)))
    start = at("2026-06-01T00:00:00+00:00")
    assert muted_until(Timing(active=("y",)), never, start) == start + HORIZON_S
    assert muted_until(Timing(), never, start) is None  # no timing: never muted


# The oracle: the first whole minute (UTC; the zones used have whole-minute offsets since
# 1980) at which the timing is not muted, looking up to LIMIT minutes ahead.
LIMIT = 3 * 1440


def oracle(timing: Timing, intervals: dict[str, TimeInterval], start: float) -> float | None:
    if not muted(timing, intervals, start):
        return None
    minute = (int(start) // 60 + 1) * 60
    for _ in range(LIMIT):
        if not muted(timing, intervals, minute):
            return float(minute)
        minute += 60
    return float("inf")


def ranges(low: int, high: int) -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.integers(low, high), st.integers(low, high)).map(
        lambda pair: (min(pair), max(pair)))


@functools.cache
def transitions(zone: ZoneInfo, year: int) -> list[float]:
    """The instants ``zone`` changes its UTC offset in ``year`` (to the second)."""
    found, day = [], at(f"{year}-01-01T00:00:00+00:00")
    for _ in range(366):
        if datetime.fromtimestamp(day, zone).utcoffset() != \
                datetime.fromtimestamp(day + 86400, zone).utcoffset():
            low, high = int(day), int(day) + 86400
            while high - low > 1:
                middle = (low + high) // 2
                same = datetime.fromtimestamp(middle, zone).utcoffset() == \
                    datetime.fromtimestamp(low, zone).utcoffset()
                low, high = (middle, high) if same else (low, middle)
            found.append(float(high))
        day += 86400
    return found


# Edges near the hours DST changes happen at (00:00 to 03:00 local) more often than chance.
edges = st.one_of(st.sampled_from([0, 30, 60, 90, 120, 150, 180, 210, 1440]),
                  st.integers(0, 1440))
times = st.tuples(edges, edges).filter(lambda pair: pair[0] < pair[1])
days = st.one_of(ranges(1, 31), ranges(-31, -1))


def specs(zone: st.SearchStrategy[ZoneInfo]) -> st.SearchStrategy[Spec]:
    return st.builds(
        Spec,
        times=st.none() | st.lists(times, min_size=1, max_size=3).map(tuple),
        weekdays=st.none() | st.lists(ranges(0, 6), min_size=1, max_size=2).map(tuple),
        days_of_month=st.none() | st.lists(days, min_size=1, max_size=2).map(tuple),
        months=st.none() | st.lists(ranges(1, 12), min_size=1, max_size=2).map(tuple),
        years=st.none() | st.just(((2000, 2040),)),
        zone=zone)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), zone=st.sampled_from(ZONES), year=st.integers(2001, 2037),
       near=st.booleans(), fraction=st.floats(0, 0.999))
def test_muted_until_is_the_first_minute_the_oracle_finds_unmuted(
        data: st.DataObject, zone: ZoneInfo, year: int, near: bool, fraction: float) -> None:
    """Any moment, or (half the time) one within six hours of a change of ``zone``'s
    offset; most specs in ``zone``."""
    in_zone = specs(st.just(zone) | st.sampled_from(ZONES))
    mute = data.draw(st.lists(st.lists(in_zone, min_size=1, max_size=2), max_size=2))
    active = data.draw(st.lists(st.lists(in_zone, min_size=1, max_size=2), max_size=2))
    changes = transitions(zone, year) if near else []
    start = data.draw(st.sampled_from(changes).flatmap(
        lambda change: st.integers(int(change) - 6 * 3600, int(change) + 6 * 3600))
        if changes else st.integers(int(at(f"{year}-01-01T00:00:00+00:00")),
                                    int(at(f"{year}-12-31T00:00:00+00:00"))))
    intervals = {f"m{n}": TimeInterval(f"m{n}", tuple(s)) for n, s in enumerate(mute)}
    intervals |= {f"a{n}": TimeInterval(f"a{n}", tuple(s)) for n, s in enumerate(active)}
    timing = Timing(tuple(f"m{n}" for n in range(len(mute))),
                    tuple(f"a{n}" for n in range(len(active))))
    moment = start + fraction
    expected = oracle(timing, intervals, moment)
    found = muted_until(timing, intervals, moment)
    if expected == float("inf"):
        assert found is not None and found > moment + LIMIT * 60
    else:
        assert found == expected


def minute_of_day(moment: float, zone: ZoneInfo) -> int:
    wall = datetime.fromtimestamp(moment, zone)
    return wall.hour * 60 + wall.minute


@settings(max_examples=300, deadline=None)
@given(data=st.data(), zone=st.sampled_from(ZONES[1:]), year=st.integers(2001, 2037),
       ranges_=st.integers(1, 3), active=st.booleans())
def test_muted_until_agrees_with_the_oracle_around_dst_changes(
        data: st.DataObject, zone: ZoneInfo, year: int, ranges_: int, active: bool) -> None:
    """Times of day in ``zone`` with edges in or next to the hour one of its changes of
    offset skips or repeats, from a moment within three hours of the change."""
    changes = transitions(zone, year)
    if not changes:
        return
    change = data.draw(st.sampled_from(changes))
    before, after = minute_of_day(change - 1, zone) + 1, minute_of_day(change, zone)
    near = sorted({min(1440, max(0, m + d)) for m in (before, after, (before + after) // 2)
                   for d in (-30, -1, 0, 1, 30)})
    edge = st.sampled_from(near) | st.integers(0, 1440)
    spans = data.draw(st.lists(st.tuples(edge, edge).filter(lambda p: p[0] < p[1]),
                               min_size=1, max_size=ranges_))
    start = data.draw(st.integers(int(change) - 3 * 3600, int(change) + 3 * 3600))
    intervals = {"i": TimeInterval("i", (Spec(times=tuple(spans), zone=zone),))}
    timing = Timing(active=("i",)) if active else Timing(mute=("i",))
    expected, found = oracle(timing, intervals, start), muted_until(timing, intervals, start)
    assert found == expected or expected == float("inf") and found == start + HORIZON_S
