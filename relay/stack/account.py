"""Started as root, the native stack runs as an unprivileged service user (issue 25).

``PD_RELAY_USER`` (default ``pd-relay``, never root) is made when missing. The project is
often cloned under /root (0700), so as root the stack keeps what its processes read in a
system directory (``PD_RELAY_SYSTEM_DIR``, default /var/lib/pd-relay, 0755): ``venv/``
(root's, world-readable: start.sh installs the project there, not editable), and ``run/``
and ``data/`` (the user's, 0700). The keys, routes and TLS files are copied into the run
directory (``private/``, the user's, 0600) at every start or reload: the processes read
those. Not as root, nothing of this applies: everything runs as whoever started it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.errors import ConfigError
from relay.stack.files import own_directory, write_file

if TYPE_CHECKING:
    from relay.stack.options import StackOptions

DEFAULT_USER = "pd-relay"
SYSTEM_DIR = Path("/var/lib/pd-relay")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PRIVATE = "private"  # in the run directory: the copies the processes read


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()  # every group it is in, its own included

    @property
    def nginx(self) -> str:
        """nginx's ``user`` directive's value: the user and its group."""
        import grp

        try:
            group = grp.getgrgid(self.gid).gr_name
        except KeyError:
            group = str(self.gid)
        return f"{self.name} {group}"


def user_option(env: Mapping[str, str], euid: int) -> tuple[str, list[str]]:
    """The service user's name (empty when not root: no one to switch to), and what is
    wrong with the one asked for."""
    if euid != 0:
        return "", []
    name = env.get("PD_RELAY_USER") or DEFAULT_USER
    if name == "root":
        return name, ["PD_RELAY_USER=root: the stack's processes never run as root; name an "
                      f"unprivileged user (default {DEFAULT_USER}, made when missing)"]
    if not NAME_RE.match(name):
        return name, [f"PD_RELAY_USER={name!r} is not a user name (want lower-case letters, "
                      "digits, '_' or '-', up to 32)"]
    return name, []


def system_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("PD_RELAY_SYSTEM_DIR") or SYSTEM_DIR).resolve()


def lookup(name: str, getpwnam: Callable[[str], Any] = pwd.getpwnam,
           grouplist: Callable[[str, int], list[int]] = os.getgrouplist) -> ServiceUser | None:
    try:
        entry = getpwnam(name)
    except KeyError:
        return None
    return ServiceUser(name, entry.pw_uid, entry.pw_gid,
                       frozenset(grouplist(name, entry.pw_gid)))


def ensure_user(name: str, home: Path, getpwnam: Callable[[str], Any] = pwd.getpwnam,
                run: Callable[..., Any] = subprocess.run) -> ServiceUser:
    """The service user, made when missing (a system user without a shell or home of its
    own); refused when it is root under another name."""
    found = lookup(name, getpwnam)
    if found is None:
        print(f"pd-relay: making the system user {name} to run the stack as",
              file=sys.stderr)
        done = run(["useradd", "--system", "--no-create-home", "--home-dir", str(home),
                    "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True)
        found = lookup(name, getpwnam)
        if found is None:
            raise ConfigError([f"PD_RELAY_USER={name}: cannot make this user "
                               f"({(done.stderr or '').strip() or 'useradd failed'}): make "
                               "it, or name another"])
    if found.uid == 0:
        raise ConfigError([f"PD_RELAY_USER={name} is root (uid 0): name an unprivileged user"])
    return found


def may_search(path: Path, user: ServiceUser, stat: Callable[[Path], os.stat_result]
               = os.stat) -> bool:
    """Whether ``user`` may pass through directory ``path`` (its mode bits; no ACLs)."""
    st = stat(path)
    if st.st_uid == user.uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid in user.groups:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def unreachable(path: Path, user: ServiceUser,
                stat: Callable[[Path], os.stat_result] = os.stat) -> Path | None:
    """The first directory above ``path`` that ``user`` may not pass through, if any."""
    for parent in reversed(path.parents):
        if not may_search(parent, user, stat):
            return parent
    return None


def reach_problems(wanted: Mapping[str, Path], user: ServiceUser,
                   stat: Callable[[Path], os.stat_result] = os.stat) -> list[str]:
    """A line for each path (named by its setting) the service user cannot reach."""
    problems = []
    for setting, path in wanted.items():
        blocked = unreachable(path, user, stat)
        if blocked is not None:
            problems.append(f"{setting}: the service user {user.name} cannot reach {path} "
                            f"({blocked} is closed to it): choose a directory under one "
                            "it may pass through (e.g. /var/lib), or open that one "
                            "(chmod o+x)")
    return problems


def make_system_dir(path: Path) -> None:
    """The system directory: root's, 0755 (whoever made it first, with whatever umask)."""
    own_directory(path, 0o755)


def own_dir(path: Path, user: ServiceUser,
            chown: Callable[[Path, int, int], None] = os.lchown) -> None:
    """The directory ``path`` the user's, 0700: itself only, never what is in it (the
    user may have put links there, which a recursive chown by root would follow)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700, follow_symlinks=False)
    chown(path, user.uid, user.gid)


def give_tree(path: Path, user: ServiceUser) -> None:
    """Everything under ``path`` the user's, links included but never followed: for a
    tree of root's that no one else could change (an earlier release's data), before it
    is moved where the user may write."""
    for top, dirs, files, fd in os.fwalk(path, follow_symlinks=False):
        os.chown(top, user.uid, user.gid, follow_symlinks=False)
        for name in dirs + files:
            os.chown(name, user.uid, user.gid, dir_fd=fd, follow_symlinks=False)


def private_copy(source: Path, state_dir: Path, name: str, group: int | None) -> Path:
    """A copy of ``source`` in root's state directory that the user's group may read
    (``group``; None: root only, 0600): what a process reads (the original may sit where
    the user cannot go). Root's, so the user can neither change it nor plant a link."""
    directory = own_directory(state_dir / PRIVATE, 0o750, group)
    return write_file(directory / name, source.read_bytes(),
                      0o640 if group is not None else 0o600, group)


def adopt_earlier_data(home: Path, run_dir: Path, data_dir: Path,
                       running: Callable[[Path], bool], secrets_dir: Path | None = None,
                       user: ServiceUser | None = None) -> None:
    """Upgrading from a release whose root stack ran from ``home``/run and kept Redis's
    data in ``home``/data: refuse while that stack still runs; else move its Redis data
    (and password) to ``data_dir`` when that has none yet, and say so. Nothing is left
    behind: the queued events are in Redis's append-only file, which moves whole."""
    old_run, old_data = home / "run", home / "data"
    if old_run.resolve() != run_dir and running(old_run):
        raise ConfigError([f"a stack started as root by an earlier release still runs from "
                           f"{old_run}: stop it first (./start.sh stop; its queued events "
                           "are kept in Redis's append-only file), then run this again: "
                           f"its data moves to {data_dir}"])
    if old_data.resolve() == data_dir or not (old_data / "redis").is_dir() \
            or (data_dir / "redis").exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:  # still root's and out of the user's reach: chown it first
        give_tree(old_data / "redis", user)
    shutil.move(str(old_data / "redis"), str(data_dir / "redis"))
    moved = ["Redis's data"]
    password = old_data / "redis-password"
    keep = secrets_dir or data_dir
    if password.exists() and not (keep / password.name).exists():
        keep.mkdir(parents=True, exist_ok=True)
        shutil.move(str(password), str(keep / password.name))
        moved.append("its password")
    print(f"pd-relay: moved {' and '.join(moved)} (queued events, history) from "
          f"{old_data} to {data_dir}, where the stack keeps them now that it runs as "
          "an unprivileged user", file=sys.stderr)


def prepare(options: StackOptions, running: Callable[[Path], bool]) -> ServiceUser:
    """Before a system-mode stack starts or changes: its user (made when missing), the
    earlier release's data adopted, every path its processes need within the user's
    reach (else ConfigError), its run and data directories the user's."""
    assert options.user
    user = ensure_user(options.user, options.data_dir)
    if options.system_dir:
        make_system_dir(options.system_dir)
    python = Path(os.path.realpath(sys.executable))
    problems = reach_problems({
        "PD_RELAY_RUN_DIR": options.run_dir, "PD_RELAY_DATA_DIR": options.data_dir,
        "the virtualenv (PD_RELAY_SYSTEM_DIR)": Path(sys.executable),
        "the Python it runs on (start.sh's PYTHON, e.g. PYTHON=/usr/bin/python3)":
            python}, user)
    if problems:
        raise ConfigError(problems)
    if options.system_dir:
        own_directory(options.state_dir, 0o750, user.gid)
    adopt_earlier_data(options.home, options.run_dir, options.data_dir, running,
                       options.state_dir, user)
    own_dir(options.run_dir, user)
    own_dir(options.data_dir, user)
    return user


def private_files(options: StackOptions, relay_env: dict[str, str], user: ServiceUser
                  ) -> tuple[dict[str, str], tuple[Path, Path] | None]:
    """The settings the processes get and the TLS pair nginx reads, naming the private
    copies of the keys, routes and TLS files (made again at every start and reload: their
    digests still restart what reads them). The TLS key is root's alone when nginx's
    master keeps root (a port below 1024): the user's processes never need it."""
    env = dict(relay_env)
    copy = {"RELAY_KEYS_FILE": "keys.txt", "RELAY_ROUTES_FILE": "routes.yml"}
    for setting, name in copy.items():
        if env.get(setting):
            env[setting] = str(private_copy(Path(env[setting]), options.state_dir, name,
                                            user.gid))
    tls = options.tls
    if tls is not None:
        key_group = None if options.privileged_port else user.gid
        tls = (private_copy(tls[0], options.state_dir, "tls-cert.pem", user.gid),
               private_copy(tls[1], options.state_dir, "tls-key.pem", key_group))
    return env, tls


def switch_problems(before: StackOptions, now: StackOptions) -> list[str]:
    """What a running stack cannot take by restarting programs: another service user, or
    a port across 1024 (which decides whether supervisord and nginx's master keep root;
    supervisord's own user changes only when it starts)."""
    problems = []
    if before.user != now.user:
        problems.append(f"the stack runs as {before.user or 'its caller'}, not "
                        f"{now.user or 'the caller'}: stop it first (./start.sh stop), "
                        "then start it again")
    elif now.user and before.privileged_port != now.privileged_port:
        problems.append(f"port {before.port} to {now.port} crosses 1024, which decides what "
                        "keeps root: stop the stack first (./start.sh stop), then start it "
                        "again")
    return problems
