"""Compose keeps the image's unprivileged user when the caller is root (issue 25): the
override sets no ``user:`` then, and mounts copies of the keys and routes files that
user may read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from relay.keys import read_keys
from relay.stack.compose import IMAGE_UID, image_copies, override
from relay.stack.options import StackOptions
from tests.conftest import make_key


def setup(tmp_path: Path) -> tuple[StackOptions, dict[str, str], Path, Path]:
    keys_file, routes = tmp_path / "keys.txt", tmp_path / "routes.yml"
    keys_file.write_text(f"{make_key()}\n")
    keys_file.chmod(0o600)
    routes.write_text("routes:\n  - name: all\n    keys: [key-1]\n")
    options = replace(StackOptions.from_env({}, tmp_path, euid=1000), keys_file=keys_file)
    return options, {"RELAY_ROUTES_FILE": str(routes)}, keys_file, routes


def relay_services(services: dict[str, dict[str, object]]) -> list[dict[str, object]]:
    return [s for name, s in services.items() if name not in ("redis", "nginx")]


def test_as_root_the_override_keeps_the_images_user_and_mounts_copies_it_may_read(
        tmp_path: Path) -> None:
    options, env, keys_file, routes = setup(tmp_path)
    services = override(options, env, read_keys(keys_file), caller=(0, 0))["services"]
    copies = options.run_dir / "compose"
    for service in relay_services(services):
        assert "user" not in service  # the image's own (uid 10001), never root
        assert service["volumes"] == [
            f"{copies / 'pd_routing_keys.txt'}:/etc/pd-relay/pd_routing_keys.txt:ro",
            f"{copies / 'pd_routes.yml'}:/etc/pd-relay/pd_routes.yml:ro"]


def test_as_another_user_the_override_runs_as_that_user_with_the_files_themselves(
        tmp_path: Path) -> None:
    options, env, keys_file, routes = setup(tmp_path)
    services = override(options, env, read_keys(keys_file), caller=(1000, 1001))["services"]
    for service in relay_services(services):
        assert service["user"] == "1000:1001"
        assert service["volumes"] == [f"{keys_file}:/etc/pd-relay/pd_routing_keys.txt:ro",
                                      f"{routes}:/etc/pd-relay/pd_routes.yml:ro"]


def test_the_copies_belong_to_the_images_user_and_no_one_else(tmp_path: Path) -> None:
    options, env, keys_file, routes = setup(tmp_path)
    owned: dict[str, tuple[int, int]] = {}
    image_copies(options, env, chown=lambda path, uid, gid: owned.update({
        Path(path).name: (uid, gid)}))
    copies = options.run_dir / "compose"
    assert (copies / "pd_routing_keys.txt").read_text() == keys_file.read_text()
    assert (copies / "pd_routes.yml").read_text() == routes.read_text()
    assert owned == {"pd_routing_keys.txt": (IMAGE_UID, IMAGE_UID),
                     "pd_routes.yml": (IMAGE_UID, IMAGE_UID)}
    for name in owned:
        assert (copies / name).stat().st_mode & 0o777 == 0o400
    assert "uid 10001" in (Path(__file__).resolve().parents[1] / "Dockerfile").read_text()
