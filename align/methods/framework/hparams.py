"""Hyper-parameters declared once per aligner, and checked in one place.

An aligner lists its hyper-parameters as one frozen dataclass (a subclass of :class:`HParams`): the
annotation is the type, the default is the default, and ``param(...)`` adds the range, the choices or
the wording of the error. Every integer states an upper bound (``high``) as well as a lower one: a count
that sizes memory or a loop, or a seed, has a largest sane value, and a larger one is refused here in one
line rather than failing deep inside a fit (a MemoryError, an OverflowError from a C library). A number
too large for a float (``10**400``) is not a finite number, so no float hyper-parameter accepts it. :meth:`HParams.resolve` is the only validator, so every aligner refuses bad
values the same way, with one line: ``"<aligner>: <name> must be <want>, got <value>"``; an unknown
name is refused by name, not by a ``TypeError`` from a constructor. Rules that tie several
hyper-parameters together go in the class's :meth:`HParams.check`.

``Aligner.hparams`` is the resolved declaration as a plain dict: it is saved beside fitted weights and
written into results, so names and defaults are part of the file formats.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from align.errors import BadInputError

H = TypeVar("H", bound="HParams")

# Upper bounds the declarations share: far above any setting in use, far below what breaks a fit (an
# allocation no machine makes, an index a C library cannot hold, a loop that never ends).
SEED_MAX = 2**32 - 1  # numpy's seed range, which Lightning's seed_everything enforces
MAX_ROWS = 2**24  # counts of rows: a batch, a queue, anchors kept, rows per chunk, re-ranked candidates
MAX_CODES = 2**20  # codebook and vocabulary sizes (rows of a trained or searched table)
MAX_WIDTH = 16384  # a layer width or an embedding dimension
MAX_LAYERS = 256  # layers of a network, and attention heads
MAX_TOKENS = 4096  # tokens of a sequence: a caption, an image's grid
MAX_EPOCHS = 10**6  # epochs, and epochs of patience
MAX_STEPS = 10**9  # training steps
_KINDS = (bool, int, float, str, dict)  # what a hyper-parameter may be (JSON's types), None aside
_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}


@dataclass(frozen=True)
class Rule:
    """What a value must satisfy beyond its type: ``low <= v``, ``above < v``, ``v < below``, ``v <= high``
    (numbers), ``v in choices`` (values of the choices' type). ``want`` replaces the generated wording of the error,
    ``why`` is added to it in parentheses; ``path`` lets a string be given as a ``Path`` (kept as a
    string, since hyper-parameters are saved as JSON)."""

    low: float | None = None
    above: float | None = None
    below: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    want: str | None = None
    why: str | None = None
    path: bool = False


def param(default: Any, *, low: float | None = None, above: float | None = None, below: float | None = None,
          high: float | None = None, choices: tuple[Any, ...] = (), want: str | None = None, why: str | None = None,
          path: bool = False) -> Any:
    """A dataclass field with a default and a :class:`Rule`."""
    rule = Rule(low=low, above=above, below=below, high=high, choices=tuple(choices), want=want, why=why, path=path)
    return field(default=default, metadata={"rule": rule})


def number(value: float) -> str:
    """A bound in words: integers in full (``4294967295``, not ``4.29497e+09``), other numbers as ``%g``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bounds(rule: Rule) -> str:
    """`` >= 0``, `` > 0``, `` in [0, 1)``, `` in [1, 512]``: the numeric range in words."""
    lower = f"[{number(rule.low)}" if rule.low is not None else f"({number(rule.above)}" if rule.above is not None \
        else None
    if rule.below is not None:
        return f" in {lower or '(-inf'}, {number(rule.below)})"
    if rule.high is not None:
        return f" in {lower or '(-inf'}, {number(rule.high)}]"
    if rule.low is not None:
        return f" >= {number(rule.low)}"
    return f" > {number(rule.above)}" if rule.above is not None else ""


def finite(value: numbers.Real) -> bool:
    """Whether a real number is a finite float (an integer too large for a float is not: ``10**400``)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass(frozen=True)
class Spec:
    """One hyper-parameter: its name, default, accepted kinds (from the annotation) and rule."""

    name: str
    default: Any
    kinds: tuple[type, ...]
    optional: bool
    rule: Rule

    def want(self) -> str:
        rule = self.rule
        if rule.want is not None:
            text = rule.want
        else:
            parts = []
            for kind in self.kinds:
                own = [c for c in rule.choices if type(c) is kind]
                if own:
                    parts.append(f"one of {', '.join(map(str, own))}")
                else:
                    parts.append(_NAMES[kind] + (_bounds(rule) if kind in (int, float) else ""))
            text = " or ".join(parts) + (" or None" if self.optional else "")
        return f"{text} ({rule.why})" if rule.why else text

    def _as(self, kind: type, value: Any) -> tuple[bool, Any]:
        """``(accepted, value in its saved form)`` for one kind."""
        if kind is bool:
            return isinstance(value, bool), value
        if isinstance(value, bool):
            return False, value  # Python counts bools as ints; a hyper-parameter does not
        if kind is int:
            return isinstance(value, numbers.Integral), int(value) if isinstance(value, numbers.Integral) else value
        if kind is float:
            if not isinstance(value, numbers.Real) or not finite(value):
                return False, value
            return True, value if isinstance(value, int) else float(value)
        if kind is str:
            if self.rule.path and isinstance(value, os.PathLike):
                value = os.fspath(value)
            return isinstance(value, str), value
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value

    def _allowed(self, kind: type, value: Any) -> bool:
        rule = self.rule
        own = [c for c in rule.choices if type(c) is kind]
        if own and value not in own:
            return False
        if kind in (int, float):
            return ((rule.low is None or value >= rule.low) and (rule.above is None or value > rule.above)
                    and (rule.below is None or value < rule.below) and (rule.high is None or value <= rule.high))
        return True

    def check(self, aligner: str, value: Any) -> Any:
        """``value`` in its saved form, or a one-line ``BadInputError``."""
        if value is None and self.optional:
            return None
        for kind in self.kinds:
            ok, converted = self._as(kind, value)
            if ok and self._allowed(kind, converted):
                return converted
        raise BadInputError(f"{aligner}: {self.name} must be {self.want()}, got {value!r}")


def _kinds(owner: type, name: str, annotation: Any) -> tuple[tuple[type, ...], bool]:
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    kinds = tuple(typing.get_origin(m) or m for m in members if m is not type(None))
    if not kinds or any(k not in _KINDS for k in kinds):
        raise TypeError(f"{owner.__name__}.{name}: a hyper-parameter is a bool, int, float, str or dict (or "
                        f"None), not {annotation}")
    return kinds, len(kinds) < len(members)


@functools.cache
def specs(cls: type[HParams]) -> dict[str, Spec]:
    """Every hyper-parameter of a declaration, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kinds, optional = _kinds(cls, f.name, hints[f.name])
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: every hyper-parameter needs a default")
        out[f.name] = Spec(f.name, f.default, kinds, optional, f.metadata.get("rule", Rule()))
    return out


@dataclass(frozen=True)
class HParams:
    """Base of the per-aligner declarations (subclasses are ``@dataclass(frozen=True)``)."""

    @classmethod
    def resolve(cls: type[H], aligner: str, given: Mapping[str, Any]) -> H:
        """The declaration filled from ``given`` (defaults for the rest), every value checked."""
        table = specs(cls)
        for key in given:
            if key not in table:
                # a typo mostly keeps the start of the name: "lrate" means lr, not strategy
                close = sorted(difflib.get_close_matches(str(key), table, n=3, cutoff=0.5),
                               key=lambda name: not name.startswith(str(key)[:2]))
                hint = f"did you mean {close[0]!r}?" if close else f"it takes {', '.join(table)}"
                raise BadInputError(f"{aligner}: unknown hyper-parameter {key!r}; {hint}")
        values = {name: spec.check(aligner, given.get(name, spec.default)) for name, spec in table.items()}
        return cls(**values).check(aligner)

    def check(self: H, aligner: str) -> H:
        """Rules across hyper-parameters (each alone is already checked); may return a normalised copy."""
        return self

    def bad(self, aligner: str, name: str, want: str) -> BadInputError:
        """The one-line error for ``name``, in the same words as :meth:`Spec.check`."""
        return BadInputError(f"{aligner}: {name} must be {want}, got {getattr(self, name)!r}")

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (mappings copied), in declaration order."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), dict) else v)
                for f in dataclasses.fields(self)}
