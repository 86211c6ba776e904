"""One registry implementation for every kind of swappable part.

Names follow ``<source>:<identifier>[.<tag>]`` (``torchvision:mobilenet_v2.imagenet1k_v1``,
``timm:vit_small_patch16_224``, ``hf:sentence-transformers/all-MiniLM-L6-v2``). Parts register with a
decorator at import time: built-ins when the first lookup imports ``align.builtins``, third-party
packages through the ``align.plugins`` entry-point group, so a name works in a fresh process without
the user importing anything first.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import fnmatch
import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from align.errors import AlignError, DuplicateNameError, UnknownNameError
from align.precision import SEPARATOR, set_precision, split_precision

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

PLUGIN_GROUP = "align.plugins"
BUILTINS = "align.builtins"  # the module that imports every built-in part
_SOURCED_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*:[^\s:][^\s]*$")
_PLAIN_NAME_RE = re.compile(r"^[a-z][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class EntryMeta:
    """What a user needs to choose and cite a part, beside the factory that builds it."""

    name: str
    embed_dim: int | None = None
    license: str | None = None
    citation: str | None = None
    weights: str | None = None  # asset name, local path or URL the weights come from
    weights_sha256: str | None = None
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.name.split(":", 1)[0]


@dataclass(frozen=True)
class Entry(Generic[T]):
    meta: EntryMeta
    factory: Callable[..., T]


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class DeclarationError(AlignError, TypeError):
    """A part whose class declares what it does not implement (e.g. an aligner's ``can_caption`` without ``caption``)."""


class Registry(Generic[T]):
    """Maps names to factories of one kind of part (vision encoders, aligners, datasets, ...)."""

    def __init__(self, kind: str, *, sourced: bool = True, precisions: bool = False,
                 check: Callable[[str, type], None] | None = None) -> None:
        """``sourced`` registries (models) name parts ``<source>:<identifier>[.<tag>]``; the others
        (aligners, datasets) use plain names such as ``ridge`` or ``emoji.twitter``, and may still
        have open-ended sources such as ``folder:<path>``. ``precisions`` registries (encoders) also
        take ``<name>@bfloat16`` for any registered name (:mod:`align.precision`). ``check(name, cls)``
        vets the class of every part: a class registered as its own factory when it is registered, the
        class a factory function builds when the first one is built; it raises to refuse the class."""
        self.kind = kind
        self.sourced = sourced
        self.precisions = precisions
        self._check = check
        self._checked: set[type] = set()
        self._entries: dict[str, Entry[T]] = {}
        self._sources: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[F], F]:
        """Decorator: ``@VISION_ENCODERS.register("toy:cnn", embed_dim=32)`` on a factory."""

        def decorator(factory: F) -> F:
            self.add(name, factory, **meta)
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., T], **meta: Any) -> None:
        if not (_SOURCED_NAME_RE.match(name) or (not self.sourced and _PLAIN_NAME_RE.match(name))):
            form = "'<source>:<identifier>[.<tag>]'" if self.sourced else "a lower-case name or '<source>:<identifier>'"
            raise ValueError(f"{self.kind} name {name!r} must look like {form}, no spaces")
        if self.precisions and SEPARATOR in name:
            raise ValueError(f"{self.kind} name {name!r}: {SEPARATOR!r} is reserved for a precision suffix")
        if name in self._entries:
            raise DuplicateNameError(f"{self.kind} {name!r} is already registered; pick another name")
        if isinstance(factory, type):
            self._vet(name, factory)
        self._entries[name] = Entry(EntryMeta(name=name, **meta), factory)

    def _vet(self, name: str, cls: type) -> None:
        if self._check is not None and cls not in self._checked:
            self._check(name, cls)
            self._checked.add(cls)

    def register_source(self, source: str, **meta: Any) -> Callable[[F], F]:
        """Decorator for a factory that builds *any* ``<source>:<identifier>`` name not registered
        explicitly (``timm:`` takes every ``timm.create_model`` name). The factory receives the
        identifier as its first argument."""

        def decorator(factory: F) -> F:
            if source in self._sources:
                raise DuplicateNameError(f"{self.kind} source {source!r} is already registered")
            self._sources[source] = Entry(EntryMeta(name=f"{source}:*", **meta), factory)
            return factory

        return decorator

    def _entry(self, name: str) -> Entry[T]:
        load_plugins()
        if self.precisions and SEPARATOR in name and name not in self._entries:
            base, precision = split_precision(name)
            entry = self._entry(base)
            return Entry(dataclasses.replace(entry.meta, name=name),
                         functools.partial(_built_in_precision, entry.factory, precision))
        if name in self._entries:
            return self._entries[name]
        source, _, identifier = name.partition(":")
        if identifier and source in self._sources:
            generic = self._sources[source]
            meta = dataclasses.replace(generic.meta, name=name)
            return Entry(meta, functools.partial(generic.factory, identifier))
        close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; see `align list {self.kind}`"
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}")

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the part registered under ``name``; keyword arguments go to its factory."""
        part = self._entry(name).factory(**kwargs)
        self._vet(name, type(part))
        return part

    def factory(self, name: str) -> Callable[..., T]:
        """The callable ``create(name, **kwargs)`` calls (e.g. to check ``kwargs`` against its signature)."""
        return self._entry(name).factory

    def meta(self, name: str) -> EntryMeta:
        return self._entry(name).meta

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching an fnmatch ``pattern``, in natural order.

        Open-ended sources appear once as ``<source>:*``."""
        load_plugins()
        names = [*self._entries, *(f"{source}:*" for source in self._sources)]
        return sorted((n for n in names if fnmatch.fnmatchcase(n, pattern)), key=_natural_key)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self.list())


def _built_in_precision(factory: Callable[..., Any], precision: str, **kwargs: Any) -> Any:
    return set_precision(factory(**kwargs), precision)


def _aligner_declarations(name: str, cls: type) -> None:
    """Refuse an aligner class whose declared capabilities and methods disagree: it answers
    ``declaration_problems()`` (``align.methods.framework.base.Aligner`` does; a class without that
    method declares nothing to check)."""
    problems = cls.declaration_problems() if hasattr(cls, "declaration_problems") else []
    if problems:
        raise DeclarationError(f"aligner {name!r} ({cls.__module__}.{cls.__qualname__}): {'; '.join(problems)}")


VISION_ENCODERS: Registry[Any] = Registry("encoders", precisions=True)
TEXT_ENCODERS: Registry[Any] = Registry("text", precisions=True)
EMBEDDING_TABLES: Registry[Any] = Registry("tables")
ALIGNERS: Registry[Any] = Registry("aligners", sourced=False, check=_aligner_declarations)
DATASETS: Registry[Any] = Registry("datasets", sourced=False)

REGISTRIES: dict[str, Registry[Any]] = {
    r.kind: r for r in (VISION_ENCODERS, TEXT_ENCODERS, EMBEDDING_TABLES, ALIGNERS, DATASETS)
}

_plugins_loaded = False


def load_plugins() -> None:
    """Import built-in parts, then every ``align.plugins`` entry point, once per process.

    Built-ins are imported by module name, not through their entry point, so they register from a
    source checkout that was never installed or an install whose entry points are stale; the name
    is a string so this module still has no static import of the layers above it."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    importlib.import_module(BUILTINS)
    loaded = {BUILTINS}  # pyproject.toml still declares it, for tools that list a package's plugins
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name):
        if ep.value not in loaded:  # also a plugin whose dist-info is on sys.path twice
            loaded.add(ep.value)
            ep.load()
