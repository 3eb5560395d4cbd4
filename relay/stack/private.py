"""The stack's private directories (run/, data/): theirs at every level, or refused.

A socket in a 0700 directory is reached by that directory's owner only, so the run
directory must be the stack's own (not one another user made first, where 0700 would
lock the stack out and let that user in), and no directory above it may let another
user swap it: one they own, or one they may write without the sticky bit (a rename in a
directory needs no right on what is renamed). The paths are resolved first
(``StackOptions``): a symbolic link planted at run/ is judged by where it leads.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection
from pathlib import Path


def private_dir_problems(path: Path, setting: str, owners: Collection[int],
                         lstat: Callable[[Path], os.stat_result] = os.lstat,
                         above: Collection[int] | None = None) -> list[str]:
    """What lets anyone but ``owners`` (uids: the stack's, and root) take ``path`` or its
    place; a line each, naming ``setting``. The directories above it must be root's or
    ``above``'s (default ``owners``): started as root, not the service user's, who could
    swap the directory after root looked."""
    problems = []
    found = _lstat(path, lstat)
    if found is not None:
        if not stat.S_ISDIR(found.st_mode):
            problems.append(f"{setting}: {path} is not a directory")
        elif found.st_uid not in owners:
            problems.append(f"{setting}: {path} belongs to uid {found.st_uid}, not to the "
                            "stack's user: its owner could replace the stack's sockets and "
                            "files there; remove it, or name a directory of the stack's own")
    for parent in path.parents:
        above_it = _lstat(parent, lstat)
        if above_it is None:
            continue  # made by the stack, as its own
        if above_it.st_uid not in (*(owners if above is None else above), 0):
            problems.append(f"{setting}: {parent} belongs to uid {above_it.st_uid}: its owner "
                            f"could move {path} away and put their own in its place")
        elif above_it.st_mode & 0o022 and not above_it.st_mode & stat.S_ISVTX:
            problems.append(f"{setting}: {parent} may be written by other users (mode "
                            f"{stat.S_IMODE(above_it.st_mode):o}, not sticky): they could move "
                            f"{path} away and put their own in its place; chmod go-w it")
    return problems


def _lstat(path: Path, lstat: Callable[[Path], os.stat_result]) -> os.stat_result | None:
    try:
        return lstat(path)
    except FileNotFoundError:
        return None
