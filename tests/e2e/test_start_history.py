"""End to end: ./start.sh with RELAY_HISTORY=postgres, in a temporary copy of the project:
the stack makes and starts its own PostgreSQL, migrates the record before starting the
processes, supervises the exporter (its DSN in its environment, never its command line),
events reach PostgreSQL, status shows the record with the password masked, and stop
stops PostgreSQL too."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import requests

from relay.stack.postgres import LocalPostgres, binaries
from relay.stack.processes import Process, alive, free_port, pd_relay, wait_until
from tests.conftest import make_key, trigger
from tests.e2e.test_start import environ, nginx_available, pids, project, run

__all__ = ["project"]  # the fixture


def has_postgres() -> bool:
    try:
        binaries()
    except Exception:
        return False
    return True


ALARM = "pd-relay-self-history-lag"


def paged(sim: str) -> set[tuple[str, str]]:
    events = requests.get(sim + "/_sim/events", timeout=5).json()["events"]
    return {(e["event_action"], e["dedup_key"]) for e in events if e["status"] == 202}


def delivered(sim: str) -> set[str]:
    return {key for _, key in paged(sim)}


def postgres_home(project: Path) -> Path:
    return project.parent / "system" / "postgres" if os.geteuid() == 0 \
        else project / "run" / "postgres"


@pytest.mark.skipif(not nginx_available() or not has_postgres(),
                    reason="needs nginx and Debian's postgresql (or root to apt-get them)")
def test_start_sh_with_relay_history_postgres(project: Path, tmp_path: Path) -> None:
    import psycopg

    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(make_key() + " ops\n")
    routes_file = tmp_path / "routes.yml"  # the self-check pages on ops, soon
    routes_file.write_text("routes:\n  - name: everything\n    keys: [ops]\n"
                           "self_alert:\n  keys: [ops]\n  for_s: 0\n  history_lag_s: 3\n")
    sim_port, port = free_port(), free_port()
    simulator = Process("simulator", pd_relay() + ["simulator", "--port", str(sim_port)],
                        dict(os.environ), tmp_path)
    sim = f"http://127.0.0.1:{sim_port}"
    env = dict(os.environ, PD_RELAY_MODE="native", RELAY_KEYS_FILE=str(keys_file),
               RELAY_PD_URL=sim, PD_RELAY_PORT=str(port), PD_RELAY_BIND="127.0.0.1",
               RELAY_ALLOW_ANONYMOUS="true", RELAY_HISTORY="postgres",
               PD_RELAY_POSTGRES_PORT=str(free_port()), PD_RELAY_INGRESS_NODES="1",
               PD_RELAY_WORKER_PROCESSES="1", RELAY_ROUTES_FILE=str(routes_file),
               RELAY_SELF_CHECK_S="2")
    env.pop("VIRTUAL_ENV", None)
    env.pop("RELAY_HISTORY_DSN", None)
    home = postgres_home(project)
    started = False
    try:
        result = run(project, env)
        assert result.returncode == 0, result.stdout + result.stderr
        started = True
        assert "PostgreSQL for the history's record made and started in" in result.stderr
        assert "a channel worker, the history's exporter, nginx" in result.stderr
        password = (home / "password").read_text().strip()
        processes = pids(run(project, env, "status").stdout)
        assert "history-exporter" in processes, processes
        exporter = processes["history-exporter"]
        dsn = environ(exporter)["RELAY_HISTORY_DSN"]
        assert dsn.startswith("postgresql://pd_relay:") and password in dsn
        for pid in processes.values():  # no command line shows the password
            assert password not in Path(f"/proc/{pid}/cmdline").read_text()
        with psycopg.connect(dsn, connect_timeout=10) as conn:  # migrated before the start
            assert conn.execute("SELECT max(version) FROM pd_relay.migrations"
                                ).fetchone() == (1,)

        url = f"http://127.0.0.1:{port}/v2/enqueue"
        for n in range(5):
            reply = requests.post(url, json=trigger(f"e{n}", dedup_key=f"h{n}"), timeout=10)
            assert reply.status_code == 202, reply.text

        def recorded() -> int:
            with psycopg.connect(dsn, connect_timeout=10) as conn:
                return int(conn.execute("SELECT count(*) FROM pd_relay.events WHERE "
                                        "state = 'delivered' AND dedup_key LIKE 'h_'"
                                        ).fetchone()[0])

        wait_until(lambda: recorded() == 5, 60, "the events' records in PostgreSQL")
        shown = run(project, env, "relay", "status", "--json")
        assert shown.returncode == 0, shown.stderr
        record = json.loads(shown.stdout)["history"]
        assert record["exported"] >= 5 and record["lost"] == 0
        assert password not in shown.stdout and "pd_relay:***@" in record["dsn"]
        text = run(project, env, "status").stdout
        assert "HISTORY in PostgreSQL" in text and password not in text

        # PostgreSQL stops: delivery goes on, the self-check pages (history-lag), and
        # once it is back the record catches up and the alarm resolves
        server = LocalPostgres(home, int(env["PD_RELAY_POSTGRES_PORT"]))
        server.stop()
        for n in range(5, 8):
            reply = requests.post(url, json=trigger(f"e{n}", dedup_key=f"h{n}"), timeout=10)
            assert reply.status_code == 202, reply.text
        wait_until(lambda: {f"h{n}" for n in range(8)} <= delivered(sim), 30,
                   "delivery while PostgreSQL is down")
        wait_until(lambda: ("trigger", ALARM) in paged(sim), 60, "the history-lag alarm")
        lagging = json.loads(run(project, env, "relay", "status", "--json").stdout)
        assert lagging["history"]["lag_seconds"] > 3
        server.start()
        wait_until(lambda: recorded() == 8, 90, "the record to catch up")
        wait_until(lambda: ("resolve", ALARM) in paged(sim), 60, "the alarm's resolve")

        stopped = run(project, env, "stop")
        assert stopped.returncode == 0, stopped.stderr
        started = False
        wait_until(lambda: not any(alive(pid) for pid in processes.values()), 10,
                   "every process to end")
        assert not (home / "data" / "postmaster.pid").exists()  # PostgreSQL stopped too

        # `reload` (as after a reboot: the recorded settings, its own DSN among them)
        # starts its PostgreSQL again before the processes
        bare = {k: v for k, v in env.items() if not k.startswith("RELAY_")}
        reloaded = run(project, bare, "reload")
        started = True
        assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
        assert "PostgreSQL for the history's record started in" in reloaded.stderr
        assert recorded() == 8  # the same cluster, its data kept
        processes = pids(run(project, env, "status").stdout)
        assert environ(processes["history-exporter"])["RELAY_HISTORY_DSN"] == dsn
        stopped = run(project, env, "stop")
        assert stopped.returncode == 0, stopped.stderr
        started = False
        wait_until(lambda: not any(alive(pid) for pid in processes.values()), 10,
                   "every process to end")
        assert not (home / "data" / "postmaster.pid").exists()
        for path in (project / "run" / "logs").glob("*.log"):
            assert password not in path.read_text(), path
    finally:
        if started:
            run(project, env, "stop", timeout=60)
        simulator.kill()
        shutil.rmtree(home, ignore_errors=True)
