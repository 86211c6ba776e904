"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

The temporary files and folders come from :mod:`tempfile`, which makes them private (0600, 0700).
Before one is moved into place it gets the mode a plain ``open()`` or ``mkdir()`` would have given it
under the user's umask (:func:`plain_file_mode`, :func:`plain_dir_mode`), so a results folder shared
with a group, or an HTML report behind a web server, stays readable as the umask intends.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK_LOCK = threading.Lock()
_swapped_umask: int | None = None


def _umask_from_proc() -> int | None:
    """The process umask as Linux reports it (``Umask:`` in ``/proc/self/status``, kernel 4.7+), read
    without changing it; None where there is no such line."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_umask(*, refresh: bool = False) -> int:
    """The process umask.

    Read from ``/proc`` where the system offers it (always current, changes nothing). Elsewhere the
    only way is ``os.umask``, which sets it while reading it, process-wide: that is done once, under a
    lock, swapping in the restrictive 0o077 for the instant in between (so a file another thread makes
    then is private, never too open), and the value is kept; ``refresh=True`` reads it again after the
    process has changed its umask."""
    found = _umask_from_proc()
    if found is not None:
        return found
    global _swapped_umask
    with _UMASK_LOCK:
        if _swapped_umask is None or refresh:
            _swapped_umask = os.umask(0o077)
            os.umask(_swapped_umask)
        return _swapped_umask


def plain_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


def plain_dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder: ``0o777`` less the umask."""
    return 0o777 & ~current_umask()


def make_plain(path: Path) -> None:
    """Give the file (or folder) ``path`` the mode a plain ``open()`` (or ``mkdir``) would have given it;
    a link or anything else is left alone."""
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode):
        os.chmod(path, plain_file_mode())
    elif stat.S_ISDIR(mode):
        os.chmod(path, plain_dir_mode())


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds.

    What lands at ``target`` has a plain file's mode (:func:`plain_file_mode`), not the temporary
    file's private 0600."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        make_plain(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(target: Path, payload: object, *, sort_keys: bool = True) -> None:
    with atomic_path(Path(target)) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n")


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; only if the block succeeds does it replace
    ``target`` (whose old contents are removed), so a reader never finds a folder half written by an
    interrupted block. A folder left by a killed process is a hidden ``.<name>.*.part`` sibling.
    The folder moved into place has a plain folder's mode (:func:`plain_dir_mode`), not 0700."""
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part"))
    try:
        yield tmp
        make_plain(tmp)
        old = None
        if target.exists():  # a folder cannot be renamed over a non-empty one: move the old one aside first
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
