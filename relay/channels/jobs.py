"""The RQ jobs that send one notice (``deliver``) or digest (``deliver_digest``) to one
channel, run by an RQ worker (``pd-relay channel-worker``) with the courier it installed
(relay.channels.courier: the breaker, the pace and pauses, the send).

Only failed sends count toward the channel's ``retries``: RQ counts every ``Retry`` a
job returns, a wait's (``Wait``: the pace, a pause) as much as a failure's, and fails
the job once that count reaches the ``Retry``'s ``max``. So ``run`` keeps the job's own
counts in its meta (``FAILED_SENDS``, and ``WAITED_S``, the seconds it waited) and hands
RQ a ``Retry`` whose ``max`` is past its count: only the courier ends a job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rq import Retry, get_current_job

from relay.channels.courier import Courier as Courier  # where it was first
from relay.channels.rqjobs import FAILED_SENDS, WAITED_S, Wait

_courier: Courier | None = None


def install(courier: Courier) -> None:
    """The courier this process's jobs use (``pd-relay channel-worker`` installs it)."""
    global _courier
    _courier = courier


def deliver(name: str, data: dict[str, Any]) -> Retry | str:
    """The RQ job: send notice ``data`` to channel ``name``."""
    return run(_installed().deliver, name, data)


def deliver_digest(name: str, data: dict[str, Any]) -> Retry | str:
    """The RQ job: send digest ``data`` to channel ``name``."""
    return run(_installed().deliver_digest, name, data)


def digest_failed(job: Any, connection: Any, kind: type, value: BaseException,
                  traceback: Any) -> None:
    """A digest job's ``on_failure`` (RQ calls it when the job fails, and when its
    clean-up finds it abandoned: its worker was killed mid-send): while its channel's
    breaker is open the digest is held again for the next probe (``hold_again``); the
    failed job stays RQ's record of what happened."""
    if _courier is None:
        return
    name, data = job.args
    _courier.hold_again(name, data)


def run(send: Callable[[str, dict[str, Any], int, float], Retry | str], name: str,
        data: dict[str, Any]) -> Retry | str:
    """Call ``send`` with the job's failed sends and time waited (its meta), and count
    what it hands back: a ``Wait`` its seconds, another ``Retry`` a failed send. RQ fails
    a job whose retries (waits included) reached the returned ``Retry``'s ``max``: it is
    set past them, so only the courier's count of failed sends ends a job."""
    job = get_current_job()
    if job is None:
        return send(name, data, 0, 0.0)
    failed, waited = int(job.meta.get(FAILED_SENDS, 0)), float(job.meta.get(WAITED_S, 0))
    outcome = send(name, data, failed, waited)
    if not isinstance(outcome, Retry):
        return outcome
    if isinstance(outcome, Wait):
        job.meta[WAITED_S] = waited + Retry.get_interval(0, outcome.intervals)
    else:
        job.meta[FAILED_SENDS] = failed + 1
    job.save_meta()  # type: ignore[no-untyped-call]
    return Retry(max=(job.number_of_retries or 0) + 1, interval=outcome.intervals)


def _installed() -> Courier:
    if _courier is None:
        raise RuntimeError("run channel jobs with `pd-relay channel-worker`, which reads the "
                           "routes file and installs the courier")
    return _courier
