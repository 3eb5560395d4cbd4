"""A real Prometheus and Alertmanager on loopback (Debian's ``prometheus`` and
``prometheus-alertmanager``), for the Watchdog's end-to-end test and drills: Prometheus
evaluates an always-firing ``Watchdog`` rule (``vector(1)``, as kube-prometheus has it)
and sends it to the Alertmanager, whose webhook receiver posts it to the relay's
``/adapters/alertmanager`` with a source's API key.

Every timer is short, so that a stopped Prometheus shows at the relay within seconds:
evaluation every second, ``--rules.alert.resend-delay=1s`` (an alert stays firing in the
Alertmanager for 4 x max(evaluation, resend delay) after Prometheus's last send), and the
route's group_wait, group_interval and repeat_interval of a second or two. Each program
gets a temporary storage directory in the stack's work directory, listens on
127.0.0.1 only, and the Alertmanager's cluster (gossip) port is off."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import requests

from relay.stack.processes import HOST, Process, free_port, wait_until

WATCHDOG_RULES = {"groups": [{"name": "general.rules", "rules": [{
    "alert": "Watchdog", "expr": "vector(1)", "labels": {"severity": "none"},
    "annotations": {"summary": "An alert that should always be firing to certify that "
                               "Alertmanager is working properly."}}]}]}


def binaries() -> tuple[str, str] | None:
    """Prometheus's and the Alertmanager's programs, or None if either is missing."""
    path = "/usr/bin:/usr/local/bin:/usr/sbin"
    prometheus = shutil.which("prometheus") or shutil.which("prometheus", path=path)
    alertmanager = (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
                    or shutil.which("prometheus-alertmanager", path=path))
    return (prometheus, alertmanager) if prometheus and alertmanager else None


MISSING = ("Prometheus and the Alertmanager are not installed (apt-get install prometheus "
           "prometheus-alertmanager; scripts/test installs them when run as root)")


class Alertmanager:
    """An Alertmanager whose one route sends everything to ``webhook`` (with ``token``
    as the bearer credentials), at once and again every ``repeat_s``."""

    def __init__(self, binary: str, workdir: Path, logs: Path, env: dict[str, str],
                 webhook: str, token: str, repeat_s: float = 2) -> None:
        self.binary, self.workdir, self.logs, self.env = binary, workdir, logs, env
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(json.dumps({  # JSON is YAML
            "route": {"receiver": "relay", "group_by": ["alertname"], "group_wait": "1s",
                      "group_interval": "1s", "repeat_interval": f"{repeat_s:g}s"},
            "receivers": [{"name": "relay", "webhook_configs": [{
                "url": webhook, "send_resolved": True,
                "http_config": {"authorization": {"credentials": token}}}]}],
        }))
        self.config.chmod(0o600)  # it holds the API key
        self.process: Process | None = None

    def start(self) -> None:
        argv = [self.binary, f"--config.file={self.config}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address={HOST}:{self.port}", "--cluster.listen-address="]
        self.process = Process("alertmanager", argv, self.env, self.logs, signal.SIGTERM)
        wait_until(lambda: requests.get(self.url + "/-/ready", timeout=1).ok, 30,
                   "the Alertmanager to be ready")

    def stop(self) -> None:
        if self.process:
            self.process.stop()


class Prometheus:
    """A Prometheus with the Watchdog rule, sending to ``alertmanager`` (host:port);
    ``stop`` and ``start`` again keep its port and storage."""

    def __init__(self, binary: str, workdir: Path, logs: Path, env: dict[str, str],
                 alertmanager: str) -> None:
        self.binary, self.workdir, self.logs, self.env = binary, workdir, logs, env
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        rules = workdir / "watchdog.rules.yml"
        rules.write_text(json.dumps(WATCHDOG_RULES))
        self.config = workdir / "prometheus.yml"
        self.config.write_text(json.dumps({
            "global": {"evaluation_interval": "1s", "scrape_interval": "15s"},
            "rule_files": [str(rules)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        }))
        self.process: Process | None = None
        self.starts = 0

    def start(self) -> None:
        argv = [self.binary, f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--rules.alert.resend-delay=1s"]
        self.starts += 1
        self.process = Process(f"prometheus-{self.starts}", argv, self.env, self.logs,
                               signal.SIGTERM)
        wait_until(lambda: requests.get(self.url + "/-/ready", timeout=1).ok, 30,
                   "Prometheus to be ready")

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 5 s): it sends nothing more."""
        if self.process:
            self.process.stop()

    def alive(self) -> bool:
        return bool(self.process and self.process.alive())


class WatchdogPair:
    """Both, in ``workdir``: the Alertmanager first, then Prometheus."""

    def __init__(self, workdir: Path, logs: Path, env: dict[str, str], webhook: str,
                 token: str, repeat_s: float = 2) -> None:
        found = binaries()
        if found is None:
            raise RuntimeError(MISSING)
        workdir.mkdir(parents=True, exist_ok=True)
        self.alertmanager = Alertmanager(found[1], workdir, logs, env, webhook, token,
                                         repeat_s)
        self.prometheus = Prometheus(found[0], workdir, logs, env,
                                     f"{HOST}:{self.alertmanager.port}")

    def start(self) -> None:
        self.alertmanager.start()
        self.prometheus.start()

    def close(self) -> None:
        self.prometheus.stop()
        self.alertmanager.stop()
