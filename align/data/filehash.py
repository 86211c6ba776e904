"""Content hashes (sha256) of a user dataset's files, with a cache that never trusts size and time alone.

A dataset read from the user's own files (``folder:``, ``manifest:``) is versioned by what the files
hold: names, sizes and modification times are not enough, since ``cp -p``, ``rsync -t`` or ``touch -r``
can change a file's bytes and keep both. Hashing every file on every run would re-read the whole
dataset, so each hash is cached under a key that a content change always moves:

    (resolved path, size, mtime_ns, ctime_ns, inode, device)

``ctime`` is set by the kernel on every write, rename or ``chmod``, and no user call (``utime``,
``touch``, ``cp -p``, ``rsync -t``) can set it back; a file replaced by another (``mv``, ``rsync``'s
temporary file) has a new inode. A file whose timestamps are less than :data:`RACY_NS` old when it is
hashed is not cached (git's "racily clean" rule): a timestamp has a granularity (a clock tick, or 1-2 s
on some file systems), and a same-size write within the same tick could keep every field of the key.
A file that changes while it is being read is not cached either.

The cache is one small JSON file per dataset, ``$ALIGN_HOME/data/file-hashes/<key>.json`` (``<key>``
hashes the dataset's resolved location), written atomically, holding only the dataset's current
files. It carries a sha256 of its own entries and is checked entry by entry when read: a damaged,
truncated, foreign or hand-edited file is ignored as a whole (every file is hashed again) and
replaced. A cache that cannot be written (read-only home) only costs the re-reading; the hashes,
and so the dataset version, are the same either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from align.checksum import file_sha256

log = logging.getLogger(__name__)

FORMAT = "align.data.file-hashes"
FORMAT_VERSION = 1
RACY_NS = 2_000_000_000  # files changed less than this before hashing are not cached
MISSING = "missing"  # the hash given for a path that is not a readable regular file
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Key = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


def _now_ns() -> int:
    return time.time_ns()


def cache_file(location: Path) -> Path:
    """The cache of the dataset at ``location`` (a folder or a manifest file), in ``$ALIGN_HOME``."""
    from align.assets.store import align_home

    key = hashlib.sha256(str(location).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return align_home() / "data" / "file-hashes" / f"{key}.json"


def _stat_key(stat: os.stat_result) -> Key:
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)


def _entries_digest(location: str, entries: dict[str, list]) -> str:
    canonical = json.dumps([FORMAT, FORMAT_VERSION, location, entries], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()


def _valid_entry(value: object) -> bool:
    return (isinstance(value, list) and len(value) == 6
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value[:5])
            and isinstance(value[5], str) and _SHA256.match(value[5]) is not None)


def load_cache(path: Path, location: str) -> dict[str, tuple[Key, str]]:
    """The verified entries of the cache file ``path``, or ``{}`` when it is absent or not to be trusted."""
    try:
        payload = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("version") != FORMAT_VERSION:
        return {}
    entries = payload.get("entries")
    if (payload.get("location") != location or not isinstance(entries, dict)
            or not all(isinstance(k, str) and _valid_entry(v) for k, v in entries.items())
            or payload.get("sha256") != _entries_digest(location, entries)):
        log.debug("%s: damaged or foreign file-hash cache ignored", path)
        return {}
    return {name: (tuple(value[:5]), value[5]) for name, value in entries.items()}  # type: ignore[misc]


def save_cache(path: Path, location: str, entries: dict[str, tuple[Key, str]]) -> None:
    """Write the cache atomically; a failure (read-only or missing home) is logged and ignored."""
    from align.atomic import atomic_path

    listed = {name: [*key, sha] for name, (key, sha) in sorted(entries.items())}
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "location": location, "entries": listed,
               "sha256": _entries_digest(location, listed)}
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")
    except OSError as err:
        log.debug("%s: file-hash cache not written (%s)", path, err)


def _hash_one(resolved: str, cached: dict[str, tuple[Key, str]], kept: dict[str, tuple[Key, str]]) -> str:
    try:
        before = os.stat(resolved)
    except OSError:
        return MISSING
    if not stat.S_ISREG(before.st_mode):
        return MISSING
    key = _stat_key(before)
    hit = cached.get(resolved)
    if hit is not None and hit[0] == key:
        kept[resolved] = hit
        return hit[1]
    started = _now_ns()
    try:
        sha = file_sha256(Path(resolved))
        after = os.stat(resolved)
    except OSError:
        return MISSING
    newest = max(before.st_mtime_ns, before.st_ctime_ns)
    if _stat_key(after) == key and started - newest >= RACY_NS:
        kept[resolved] = (key, sha)
    return sha


def content_hashes(location: Path, paths: Sequence[Path]) -> list[str]:
    """sha256 of each file of ``paths`` (:data:`MISSING` for one that is absent or unreadable), using
    and refreshing the cache of the dataset at ``location``."""
    where = os.path.realpath(location)
    cache = cache_file(Path(where))
    cached = load_cache(cache, where)
    kept: dict[str, tuple[Key, str]] = {}
    hashes = [_hash_one(os.path.realpath(path), cached, kept) for path in paths]
    if kept != cached:
        save_cache(cache, where, kept)
    return hashes


def content_digest(location: Path, root: Path, paths: Sequence[Path], extra: Sequence[str] = ()) -> str:
    """Short sha256 over ``extra`` and each file's name (relative to ``root`` where it lies under it)
    and content hash: it changes whenever a file's bytes, a name or the file list do."""
    digest = hashlib.sha256(b"content-sha256\n")
    for part in extra:
        digest.update(f"{part}\0".encode("utf-8", "surrogateescape"))
    for path, sha in zip(paths, content_hashes(location, paths)):
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        digest.update(f"{name}\0{sha}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:12]
