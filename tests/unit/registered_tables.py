"""Tiny embedding tables registered for one test module only (the registered toy tables have a 1000-row
WordPiece vocabulary that other tests rely on), with the methods' table loaders' caches cleared on entry
and on exit so no module sees another's tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from align.registry import EMBEDDING_TABLES


@contextmanager
def registered_tables(tables: Mapping[str, tuple[Callable[[], Any], str]], loaders: tuple[Any, ...],
                      embed_dim: int = 32) -> Iterator[None]:
    """Register ``{name: (factory, description)}``; ``loaders`` are ``functools.cache``-d table loaders."""
    for name, (factory, description) in tables.items():
        EMBEDDING_TABLES.add(name, factory, embed_dim=embed_dim, license="MIT", citation=None, weights=None,
                             description=description)
    for loader in loaders:
        loader.cache_clear()
    try:
        yield
    finally:
        for name in tables:
            EMBEDDING_TABLES._entries.pop(name)
        for loader in loaders:
            loader.cache_clear()
