"""Files the stack writes, written so that no link or file planted where they go is
followed: a new file beside the target (``O_EXCL | O_NOFOLLOW``), given its mode and group
through its descriptor, then renamed over the target (a rename replaces a link, never
what it points at). Started as root, the stack keeps what it writes in a directory of its
own (``StackOptions.state_dir``), which the service user may read (``group``) but not
change; this is the second lock."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from relay.errors import ConfigError


def write_file(path: Path, data: str | bytes, mode: int = 0o600,
               group: int | None = None) -> Path:
    """Write ``path`` whole with ``mode`` (and ``group``, when given: its readers)."""
    raw = data.encode() if isinstance(data, str) else data
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            if group is not None:
                os.fchown(out.fileno(), -1, group)
            os.fchmod(out.fileno(), mode)
            out.write(raw)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def own_directory(path: Path, mode: int = 0o700, group: int | None = None) -> Path:
    """``path`` made if missing, a directory (not a link) of this user's, with ``mode``
    (and ``group``); ConfigError when it is another user's or not a directory."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
        raise ConfigError([f"{path} is not a directory of this user's (uid {os.geteuid()}): "
                           "remove it, the stack makes it"])
    if group is not None:
        os.chown(path, -1, group, follow_symlinks=False)
    os.chmod(path, mode, follow_symlinks=False)
    return path


def read_small(path: Path, most: int = 256) -> bytes | None:
    """A small file that another user may have made (supervisord's pid file in the run
    directory it runs in as the service user, a password in its data directory): never
    through a link, never waiting on a FIFO, a regular file, at most ``most`` bytes; None
    when it is not that."""
    try:  # not opened at all unless a regular file (a FIFO's writer learns of no reader)
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:  # swapped since: still never through a link, never waiting
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, most)
    finally:
        os.close(fd)


def read_pid(path: Path) -> int | None:
    """The pid in such a pid file (``read_small``), if it holds one."""
    try:
        return int(read_small(path, 32) or b"")
    except ValueError:
        return None
