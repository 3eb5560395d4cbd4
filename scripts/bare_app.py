"""The ingest ceiling for benchmarks: a bare Flask endpoint under waitress that only
answers 202, served exactly as ``pd-relay ingress`` serves the relay (same threads)."""

from __future__ import annotations

import sys

import waitress
from flask import Flask

app = Flask(__name__)


@app.post("/v2/enqueue")
def enqueue() -> tuple[dict[str, str], int]:
    return {"status": "success", "message": "Event queued", "dedup_key": "bare"}, 202


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]),
                   ident="bare")
