"""Run folders and result files: atomic writes, and the versions that produced a result."""

from __future__ import annotations

import json
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def fsync_path(path: str | Path, *, files: bool = True) -> None:
    """Flush a file, or a folder's files (unless not ``files``) and its own entries, to disk:
    what a rename publishes is then there after a power cut too, not only after a crash."""
    path = Path(path)
    inside = sorted(path.rglob("*")) if path.is_dir() and files else []
    for item in [*inside, path]:
        try:
            fd = os.open(item, os.O_RDONLY)
        except OSError:
            if item.is_dir():  # folders cannot be opened everywhere (Windows)
                continue
            raise
        try:
            os.fsync(fd)
        except OSError:
            if not item.is_dir():  # some file systems refuse to sync a folder (EINVAL)
                raise
        finally:
            os.close(fd)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, set | tuple):
        return list(obj)
    return str(obj)


def new_run_dir(kind: str, name: str, root: str | Path = "runs") -> Path:
    """A fresh folder such as ``runs/eval-router-20261125-193000-3fa2``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{kind}-{name}-{stamp}-{secrets.token_hex(2)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def versions() -> dict[str, Any]:
    """Python, platform, and every loaded plugin's package and version."""
    from gymrl import __version__, plugins

    reg = plugins.registry()
    return {
        "gymrl": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "plugins": {name: {"package": p.package, "version": p.version, "module": p.module}
                    for name, p in sorted(reg.plugins.items())},
    }
