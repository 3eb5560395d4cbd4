"""Reference endpoints for the ingest benchmark, served exactly as ``pd-relay ingress``
serves the relay (waitress, same threads):

- ``bare_app.py PORT THREADS``: a bare Flask endpoint that only answers 202 (the ceiling);
- ``bare_app.py PORT THREADS REDIS_URL``: the same, after one redis-py LPUSH of the body
  (the least any endpoint that stores each event in Redis before answering can do).
"""

from __future__ import annotations

import sys

import redis
import waitress
from flask import Flask, request

app = Flask(__name__)
store: redis.Redis | None = None


@app.post("/v2/enqueue")
def enqueue() -> tuple[dict[str, str], int]:
    if store is not None:
        store.lpush("bench:lpush", request.get_data())
    return {"status": "success", "message": "Event queued", "dedup_key": "bare"}, 202


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    if len(sys.argv) > 3:
        store = redis.Redis.from_url(sys.argv[3])
    waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]),
                   ident="bare")
