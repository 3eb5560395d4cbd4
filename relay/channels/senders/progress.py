"""Who already has a message that goes to several recipients one by one (sms) or at once
(signal), so that a retry sends only to the rest: kept in the RQ job's ``meta``, which
lives as long as the job (its retries, its time in the failed registry, a requeue).
Outside a job (a unit test, a one-off send) nothing is kept."""

from __future__ import annotations

from rq import get_current_job

KEY = "sent_to"


def done() -> set[str]:
    job = get_current_job()
    return set(job.meta.get(KEY, ())) if job is not None else set()


def mark(*recipients: str) -> None:
    job = get_current_job()
    if job is None or not recipients:
        return
    job.meta[KEY] = sorted(set(job.meta.get(KEY, ())) | set(recipients))
    job.save_meta()  # type: ignore[no-untyped-call]
