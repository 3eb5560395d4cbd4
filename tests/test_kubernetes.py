"""deploy/kubernetes: the kustomize base and its example overlay, rendered by
``kubectl kustomize`` and every object validated against the Kubernetes schemas
(``kubernetes-validate``, offline); the relay's commands are the CLI's, the probes ask
what the ingress serves, secrets live in Secrets only, every Deployment and the Redis
StatefulSet has a PodDisruptionBudget, and nginx's template is the project's."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.cli import _parser
from relay.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
VERSION = "1.30.0"  # the oldest Kubernetes the manifests are checked against


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here (google-cloud-sdk or Kubernetes' own "
                    "package has it): the manifests were not rendered")
    done = subprocess.run([kubectl, "kustomize", str(KUBE / "example")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: o["spec"]["template"]["spec"] for o in objects
            if o["kind"] in ("Deployment", "StatefulSet") for name in [o["metadata"]["name"]]}


def test_every_object_is_valid_for_kubernetes(objects: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "Secret",
            "PodDisruptionBudget"} <= kinds
    for obj in objects:
        kubernetes_validate.validate(obj, VERSION, strict=True)  # raises on any error


def test_a_broken_object_is_refused_by_the_validator(objects: list[dict[str, Any]]) -> None:
    """The check above can fail: a typo'd field of a Deployment is an error."""
    import kubernetes_validate

    deployment = next(o for o in objects if o["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_no_secret_value_is_in_a_configmap(objects: list[dict[str, Any]]) -> None:
    secrets = [base64.b64decode(v).decode() for o in by_kind(objects, "Secret").values()
               for v in o.get("data", {}).values()]
    secrets += [v for o in by_kind(objects, "Secret").values()
                for v in o.get("stringData", {}).values()]
    assert len(secrets) >= 6  # two URLs and a DSN, three passwords, the routing keys
    pieces = {line.strip() for value in secrets for line in value.splitlines()
              if len(line.strip()) >= 8 and not line.startswith("#")}
    pieces |= {part for value in secrets if "@" in value  # a URL's password (not its user)
               for part in value.split("@")[0].split(":")[2:] if len(part) >= 8}
    for name, config in by_kind(objects, "ConfigMap").items():
        text = yaml.safe_dump(config.get("data", {}))
        assert not [p for p in pieces if p in text], name
        assert not [k for k in config.get("data", {}) if "PASSWORD" in k or k == "RELAY_REDIS_URL"]
    for spec in pods(objects).values():
        for container in spec["containers"]:
            for env in container.get("env", []):
                if any(word in env["name"] for word in ("PASSWORD", "REDIS_URL", "DSN")):
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], env


def test_the_relays_commands_and_settings_are_the_clis(objects: list[dict[str, Any]]) -> None:
    names = set(Settings.env_names())
    specs = pods(objects)
    assert {"pd-relay-ingress", "pd-relay-worker", "pd-relay-channel-worker", "redis"} <= \
        set(specs)
    for name in ("pd-relay-ingress", "pd-relay-worker", "pd-relay-channel-worker"):
        relay = next(c for c in specs[name]["containers"] if c["image"].startswith("pd-relay"))
        _parser().parse_args(relay["args"])
        assert specs[name]["securityContext"]["runAsNonRoot"] is True
        env = {e["name"] for e in relay.get("env", [])}
        env |= {k for src in relay.get("envFrom", [])
                for k in by_kind(objects, "ConfigMap")[src["configMapRef"]["name"]]["data"]}
        assert {"RELAY_REDIS_URL", "RELAY_KEYS_FILE"} <= env and env <= names, name
    settings = next(c for n, c in by_kind(objects, "ConfigMap").items()
                    if n.startswith("pd-relay-settings"))["data"]
    assert settings["RELAY_MIN_REPLICAS"] == "1"


def test_the_keys_file_is_readable_by_the_relay_alone(objects: list[dict[str, Any]]) -> None:
    """A Secret's files are root's with the pod's fsGroup: mode 440 and a group that is
    the image's relay user's alone is what the relay takes as private
    (relay.keys.granted_to_me), so the image pins that group's id."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--gid 10001" in dockerfile and "groupadd --system --gid 10001 relay" in dockerfile
    for name in ("pd-relay-ingress", "pd-relay-worker", "pd-relay-channel-worker"):
        spec = pods(objects)[name]
        context = spec["securityContext"]
        assert context["runAsUser"] == context["runAsGroup"] == context["fsGroup"] == 10001
        keys = next(v for v in spec["volumes"] if v["name"] == "keys")
        assert keys["secret"]["defaultMode"] == 0o440


def test_probes_ask_what_the_ingress_serves(objects: list[dict[str, Any]]) -> None:
    """/healthz is open to all: the kubelet asks it over HTTP. /readyz answers only
    RELAY_ADMIN_ALLOW (the kubelet's address is the node's, whatever it is): it is
    asked from inside the pod, on 127.0.0.1, which the settings allow."""
    from relay.app import create_app  # noqa: F401  (the routes below are the app's)

    ingress = pods(objects)["pd-relay-ingress"]
    relay = next(c for c in ingress["containers"] if c["name"] == "ingress")
    alive = " ".join(relay["livenessProbe"]["exec"]["command"])
    ready = " ".join(relay["readinessProbe"]["exec"]["command"])
    assert "http://127.0.0.1:8081/healthz" in alive and "http://127.0.0.1:8081/readyz" in ready
    args = relay["args"]
    assert args[args.index("--port") + 1] == "8081" and args[args.index("--host") + 1] == \
        "127.0.0.1"  # only nginx, beside it, reaches the node
    settings = next(c for n, c in by_kind(objects, "ConfigMap").items()
                    if n.startswith("pd-relay-settings"))["data"]
    assert "127.0.0.1" in settings["RELAY_ADMIN_ALLOW"].split(",")
    assert settings["RELAY_TRUSTED_PROXIES"] == "127.0.0.1/32"  # nginx, beside it
    nginx = next(c for c in ingress["containers"] if c["name"] == "nginx")
    assert nginx["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # the unprivileged image's default.conf also listens on 8080: an empty conf.d hides it
    sites = next(m for m in nginx["volumeMounts"] if m["mountPath"] == "/etc/nginx/conf.d")
    assert next(v for v in ingress["volumes"] if v["name"] == sites["name"])["emptyDir"] == {}
    for name in ("redis", "sentinel"):
        container = next(c for c in pods(objects)["redis"]["containers"] if c["name"] == name)
        assert "redis-cli" in " ".join(container["readinessProbe"]["exec"]["command"])


def test_every_workload_has_a_disruption_budget(objects: list[dict[str, Any]]) -> None:
    budgets = by_kind(objects, "PodDisruptionBudget").values()
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
                ], workload["metadata"]["name"]
        assert workload["spec"]["replicas"] >= 2 or workload["kind"] == "StatefulSet"
    redis = by_kind(objects, "StatefulSet")["redis"]
    assert redis["spec"]["replicas"] == 3  # a primary, two replicas; a Sentinel beside each
    budget = next(b for b in budgets if b["spec"]["selector"]["matchLabels"].get(
        "app.kubernetes.io/name") == "redis")
    assert budget["spec"]["maxUnavailable"] == 1  # two Sentinels of three: the quorum


def test_nginx_serves_the_projects_template() -> None:
    copy = KUBE / "base" / "nginx" / "pd-relay.conf.template"
    assert copy.read_text() == (ROOT / "nginx" / "pd-relay.conf.template").read_text(), \
        "copy nginx/pd-relay.conf.template to deploy/kubernetes/base/nginx/ (kustomize " \
        "reads no file outside its directory)"


def test_the_redis_scripts_configure_a_replicated_primary_with_sentinels(
        objects: list[dict[str, Any]]) -> None:
    from relay.stack.options import StackOptions, redis_memory
    from relay.stack.render import redis_argv

    redis = (KUBE / "base" / "redis" / "redis.sh").read_text()
    sentinel = (KUBE / "base" / "redis" / "sentinel.sh").read_text()
    for line in ('requirepass \\"$REDIS_PASSWORD\\"', 'masterauth \\"$REDIS_PASSWORD\\"',
                 "min-replicas-to-write ${MIN_REPLICAS", "min-replicas-max-lag 10",
                 "replicaof $primary $REDIS_PORT", "replica-announce-ip $ME"):
        assert line in redis, line
    for line in ("sentinel monitor mymaster $primary $REDIS_PORT 2",
                 'sentinel auth-pass mymaster "$REDIS_PASSWORD"',
                 "sentinel resolve-hostnames yes", "sentinel announce-ip $ME",
                 'requirepass "$SENTINEL_PASSWORD"'):
        assert line in sentinel, line
    # the flags every stack runs Redis with (render.redis_argv), the stack's default size
    options = StackOptions.from_env({"PD_RELAY_TOPOLOGY": "single"}, ROOT)
    size = redis_memory(options, Settings()).redis_maxmemory_mb
    container = pods(objects)["redis"]["containers"][0]
    assert container["args"] == redis_argv("redis-server", 6379, Path("/data"), None,
                                           size)[1:]
    discover = (KUBE / "base" / "redis" / "discover.sh").read_text()
    assert "SENTINEL GET-MASTER-ADDR-BY-NAME mymaster" in discover
    for script in (redis, sentinel):  # the current primary comes from the Sentinels first
        assert '. "${SCRIPTS:-/scripts}/discover.sh"' in script
        assert "primary=$(discover)" in script
    for path in (KUBE / "base" / "redis").glob("*.sh"):
        assert subprocess.run(["sh", "-n", str(path)]).returncode == 0, path


def test_the_redis_pods_scripts_replicate_fail_over_and_rejoin(tmp_path: Path) -> None:
    """The StatefulSet's scripts run here, three "pods" on 127.0.0.1, .2 and .3 (this
    machine's redis-server and redis-cli): two replicas of the first, three Sentinels
    that know them all; the first pod killed -9, a replica is promoted; the first pod
    started again asks the Sentinels and comes back as a replica of the new primary."""
    import os

    import redis

    from relay.stack import binaries
    from relay.stack.processes import Process, free_port, wait_until
    from relay.stack.render import redis_argv

    scripts = KUBE / "base" / "redis"
    binary = binaries.redis_server()
    path = f"{Path(binary).parent}:{os.environ['PATH']}"
    if not shutil.which("redis-cli", path=path):
        pytest.skip("no redis-cli beside redis-server here")
    port, sentinel_port = free_port(), free_port()
    addresses = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    logs = tmp_path / "logs"
    logs.mkdir()
    running: dict[int, list[Process]] = {}

    def start(n: int) -> None:
        pod = tmp_path / f"pod{n}"
        for part in ("data", "conf", "sentinel"):
            (pod / part).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PATH=path, REDIS_PASSWORD="k8s-data", SENTINEL_PASSWORD="k8s-own",
                   MIN_REPLICAS="1", PEERS=" ".join(addresses), ME=addresses[n],
                   FIRST=addresses[0], REDIS_PORT=str(port), SENTINEL_PORT=str(sentinel_port),
                   SCRIPTS=str(scripts), CONF_DIR=str(pod / "conf"),
                   SENTINEL_DIR=str(pod / "sentinel"), SENTINEL_BIND=addresses[n])
        args = redis_argv("redis-server", port, pod / "data", addresses[n])[1:]
        running[n] = [Process(f"redis-{n}", ["sh", str(scripts / "redis.sh"), *args], env, logs),
                   Process(f"sentinel-{n}", ["sh", str(scripts / "sentinel.sh")], env, logs)]

    def node(n: int) -> redis.Redis:
        return redis.Redis(host=addresses[n], port=port, password="k8s-data", socket_timeout=2,
                           decode_responses=True)

    def sentinel(n: int) -> redis.Redis:
        return redis.Redis(host=addresses[n], port=sentinel_port, password="k8s-own",
                           socket_timeout=2, decode_responses=True)

    try:
        start(0)
        wait_until(lambda: node(0).ping() and sentinel(0).ping(), 20, "the first pod")
        start(1)
        start(2)
        wait_until(lambda: all(node(n).info("replication")["master_link_status"] == "up"
                               for n in (1, 2)), 30, "the replicas to sync", every=0.2)
        wait_until(lambda: len(sentinel(0).execute_command("SENTINEL", "SENTINELS",
                                                           "mymaster")) == 2
                   and len(sentinel(0).execute_command("SENTINEL", "REPLICAS", "mymaster")) == 2,
                   30, "the Sentinels to know each other and the replicas", every=0.2)
        node(0).set("k8s", "kept")
        assert node(0).wait(2, 2000) == 2
        for process in running[0]:
            process.kill()

        def promoted() -> str:
            found = sentinel(1).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                                "mymaster")[0]
            return "" if found == addresses[0] else str(found)

        new = wait_until(promoted, 60, "a replica to be promoted", every=0.5)
        assert node(addresses.index(new)).get("k8s") == "kept"
        start(0)
        wait_until(lambda: node(0).info("replication").get("master_host") == new
                   and node(0).info("replication")["master_link_status"] == "up", 30,
                   "the first pod to come back as a replica of the new primary", every=0.2)
        assert node(0).get("k8s") == "kept"
    finally:
        for processes in running.values():
            for process in processes:
                process.kill()


def test_a_redis_pod_is_ready_only_once_it_has_the_data(
        objects: list[dict[str, Any]], tmp_path: Path) -> None:
    """The readiness probe of a Redis pod: a replica is ready once it is in sync with its
    primary, not as soon as it answers PING. The PodDisruptionBudget and the
    StatefulSet's rolling update count ready pods: a replica ready before it synced let
    a drain or a restart take the other replica too, and the primary, with no replica in
    sync, refused every write (min-replicas-to-write)."""
    import os

    from relay.stack import binaries
    from relay.stack.processes import Process, free_port, wait_until
    from relay.stack.render import redis_argv

    [container] = [c for c in pods(objects)["redis"]["containers"] if c["name"] == "redis"]
    probe = container["readinessProbe"]["exec"]["command"]
    scripts = KUBE / "base" / "redis"
    binary = binaries.redis_server()
    path = f"{Path(binary).parent}:{os.environ['PATH']}"
    if not shutil.which("redis-cli", path=path):
        pytest.skip("no redis-cli beside redis-server here")
    port = free_port()
    addresses = ["127.0.0.1", "127.0.0.2"]
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = []

    def env(n: int) -> dict[str, str]:
        return dict(os.environ, PATH=path, REDIS_PASSWORD="k8s-data", SENTINEL_PASSWORD="k8s-own",
                    MIN_REPLICAS="0", PEERS="", ME=addresses[n], FIRST=addresses[0],
                    REDIS_PORT=str(port), SCRIPTS=str(scripts),
                    CONF_DIR=str(tmp_path / f"conf{n}"))

    def start(n: int) -> None:
        (tmp_path / f"conf{n}").mkdir()
        (tmp_path / f"data{n}").mkdir()
        args = redis_argv("redis-server", port, tmp_path / f"data{n}", addresses[n])[1:]
        processes.append(Process(f"redis-{n}", ["sh", str(scripts / "redis.sh"), *args],
                                 env(n), logs))

    def ready(n: int) -> bool:  # the probe, pointed at this pod's address and port
        command = [part.replace("redis-cli", f"redis-cli -h {addresses[n]} -p {port}")
                   for part in probe]
        return subprocess.run(command, env=env(n), timeout=10).returncode == 0

    def answers(n: int) -> bool:
        return subprocess.run(["redis-cli", "-h", addresses[n], "-p", str(port), "ping"],
                              env=dict(env(n), REDISCLI_AUTH="k8s-data"), capture_output=True,
                              text=True, timeout=10).stdout.strip() == "PONG"

    try:
        start(1)  # a replica of the first pod, which is not there yet
        wait_until(lambda: answers(1), 20, "the replica to answer")
        assert not ready(1)
        start(0)
        wait_until(lambda: ready(0), 20, "the primary to be ready")
        wait_until(lambda: ready(1), 30, "the replica to be ready once in sync", every=0.2)
    finally:
        for process in processes:
            process.kill()


def test_the_history_component_adds_postgresql_the_exporter_and_the_dsn(
        objects: list[dict[str, Any]]) -> None:
    specs = pods(objects)
    postgres = by_kind(objects, "StatefulSet")["postgres"]
    [server] = postgres["spec"]["template"]["spec"]["containers"]
    assert server["image"] == "postgres:15"
    assert postgres["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    exporter = specs["pd-relay-history-exporter"]
    [migrate] = exporter["initContainers"]
    [running] = exporter["containers"]
    assert (migrate["args"], running["args"]) == (["history", "migrate"], ["history-exporter"])
    _parser().parse_args(migrate["args"])
    _parser().parse_args(running["args"])
    for name in ("pd-relay-ingress", "pd-relay-worker", "pd-relay-channel-worker",
                 "pd-relay-history-exporter"):
        spec = specs[name]
        for container in spec["containers"] + spec.get("initContainers", []):
            if not container["image"].startswith("pd-relay"):
                continue
            [dsn] = [e for e in container["env"] if e["name"] == "RELAY_HISTORY_DSN"]
            assert dsn["valueFrom"]["secretKeyRef"] == {"name": dsn["valueFrom"][
                "secretKeyRef"]["name"], "key": "RELAY_HISTORY_DSN"}, name
    secret = next(o for o in by_kind(objects, "Secret").values() if "RELAY_HISTORY_DSN"
                  in o.get("data", {}))
    dsn = base64.b64decode(secret["data"]["RELAY_HISTORY_DSN"]).decode()
    assert dsn.startswith("postgresql://") and "@postgres:5432/" in dsn  # the Service
    assert "postgres" in by_kind(objects, "Service")
