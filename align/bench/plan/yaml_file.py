"""Reading a config YAML file safely: only plain data, of a bounded size, or a one-line error naming it.

``yaml.safe_load`` builds plain data only (no tags run code), but it still accepts things a config
must not hold: a binary or non-UTF-8 file, anchors and aliases that expand into millions of values
(a few lines of YAML whose expansion fills every result file with hundreds of MB), nesting deep
enough to overflow the parser, values JSON cannot represent (dates, binary, sets), which every
result stores, and a key written twice in one mapping (YAML's loaders keep the last silently, so
``aligners: [ridge]`` followed by ``aligners: [procrustes]`` would run Procrustes alone). Each of these
is refused here, before any key is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from align.errors import BadInputError

class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated within one mapping, naming its line."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    written = [key_node for key_node, _ in node.value if not key_node.tag.endswith(":merge")]
    seen: dict[Any, int] = {}
    for key_node in written:  # keys written here; one merged in by ``<<`` may be overridden, as YAML says
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # an unhashable key: the base constructor gives its own error
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)

MAX_BYTES = 1 << 20  # a config is a few kB; a larger file is not one
MAX_VALUES = 10_000  # values once aliases are expanded (the all-methods config has about 100)


def read_yaml(path: Path, what: str = "config file") -> Any:
    """The plain data in ``path``."""
    source = str(path)
    if "\0" in source:
        raise BadInputError(f"{source!r}: a {what} path cannot contain a NUL character")
    if path.is_dir():
        raise BadInputError(f"{source}: is a folder, not a {what}")
    if not path.is_file():
        raise BadInputError(f"{source}: no such {what}")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise BadInputError(f"{source}: cannot read ({err.strerror or err})") from None
    if len(data) > MAX_BYTES:
        raise BadInputError(f"{source}: larger than {MAX_BYTES // 1024} KiB; not a {what}")
    if b"\0" in data:
        raise BadInputError(f"{source}: a binary file (NUL bytes), not a YAML {what}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadInputError(f"{source}: not UTF-8 text (byte {err.start}); not a YAML {what}") from None
    try:
        loaded = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader: plain data only)
    except yaml.constructor.ConstructorError as err:
        if err.problem and "appears twice" in err.problem:
            raise BadInputError(f"{source}: {err.problem}: a repeated key would silently replace the first; "
                                "write it once") from None
        raise BadInputError(f"{source}: line {err.problem_mark.line + 1}: not valid YAML") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        raise BadInputError(f"{source}: {where}: not valid YAML") from None
    except RecursionError:
        raise BadInputError(f"{source}: nested too deeply to be a {what}") from None
    except (ValueError, OverflowError) as err:  # e.g. a date-like value that is no date (2024-13-45)
        raise BadInputError(f"{source}: not valid YAML ({err})") from None
    check_plain(loaded, source)
    return loaded


def check_plain(value: Any, source: str) -> None:
    """At most :data:`MAX_VALUES` values once aliases are expanded, string keys, and JSON's value types only."""
    count = 0
    stack: list[tuple[Any, str]] = [(value, "top level")]
    while stack:
        node, where = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise BadInputError(f"{source}: expands to more than {MAX_VALUES} values (YAML anchors and aliases "
                                "repeated?); write the config out or split it")
        if isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    raise BadInputError(f"{source}: {where}: key {key!r} is not a string (quote it)")
                stack.append((item, key if where == "top level" else f"{where}.{key}"))
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(node))
        elif node is not None and not isinstance(node, (str, bool, int, float)):
            raise BadInputError(f"{source}: {where}: a {type(node).__name__} value cannot be stored in results "
                                "(quote it to make it a string)")
