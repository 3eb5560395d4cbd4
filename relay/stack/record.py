"""What a stack was started with, kept in its run directory (``stack.json``, mode 0600:
it may hold a Redis password): mode, options, the relay's settings, its keys' ids and
each program's fingerprint. ``status``, ``reload``, ``down``, ``logs`` and ``relay``
read it, so they talk to the stack that runs whatever the shell they run in says, and
``up`` compares against it to restart only what changed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.stack.files import write_file
from relay.stack.options import StackOptions

FILE = "stack.json"


@dataclass
class Recorded:
    mode: str  # native or docker
    options: StackOptions
    relay_env: dict[str, str]  # every RELAY_* setting the processes run with
    key_ids: list[str] = field(default_factory=list)
    programs: dict[str, str] = field(default_factory=dict)  # name: fingerprint
    nginx_digest: str = ""
    # its ingress nodes and Redis listen on Unix sockets (false: recorded by v0.2.0 or
    # before, when they listened on TCP ports)
    sockets: bool = True

    def save(self) -> None:
        data: dict[str, Any] = {
            "mode": self.mode, "options": self.options.public(), "relay_env": self.relay_env,
            "key_ids": self.key_ids, "programs": self.programs,
            "nginx_digest": self.nginx_digest, "sockets": self.sockets,
        }
        write_file(self.options.state_dir / FILE, json.dumps(data, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> Recorded | None:
        """What was recorded in ``state_dir`` (``StackOptions.state_dir``: the run
        directory, or root's own, where the service user cannot change it)."""
        try:
            data = json.loads((state_dir / FILE).read_text())
        except FileNotFoundError:
            return None
        return cls(mode=data["mode"], options=StackOptions.recorded(data["options"]),
                   relay_env=data["relay_env"], key_ids=data["key_ids"],
                   programs=data["programs"], nginx_digest=data.get("nginx_digest", ""),
                   sockets=data.get("sockets", False))
