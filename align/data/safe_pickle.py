"""Reading numeric arrays out of a pickle without ever running code from it, in time linear in its size.

The classic ``mnist.pkl.gz`` is a pickle: tuples of numpy arrays. ``pickle.load`` would call
whatever callable the file names, so a replaced file could run anything. This reader resolves only
the four names a pickled array uses (``_reconstruct``, ``ndarray``, ``dtype``), and to stand-ins of
its own rather than numpy's: they check each array's state (a plain number dtype with no sub-array,
fields, flags or metadata; a shape; bytes of exactly the size the shape asks for) and make the array
with :func:`numpy.frombuffer`. So nothing in the file is executed, and numpy never sees a state
from the file (its own ``__setstate__`` accepts, say, a dtype whose flags claim it holds Python
objects, or one that names itself as its sub-array base). Any other global (``os.system``,
``builtins.eval``, a class with a ``__reduce__``) is refused before anything is looked up.

A crafted file must not cost more than its size either. Before anything is unpickled, one pass over
the opcodes (:func:`scan`, with :func:`pickletools.genops`) replays the unpickler's stack and memo
abstractly and refuses:

* opcodes that a pickle of tuples/lists of arrays never needs (dicts, sets, ``INST``/``OBJ``/
  ``NEWOBJ``, extension codes, persistent ids, out-of-band buffers), and more than
  :data:`MAX_OPCODES` opcodes;
* nesting deeper than :data:`MAX_DEPTH`, counted over containment, including what ``APPEND`` and
  ``BUILD`` add to an object after it was memoised, so a cycle (a list holding itself, a dtype naming
  itself as its sub-array base) is refused too: its depth has no bound. Each object's depth only
  grows, at most ``MAX_DEPTH + 1`` times, so the replay stays linear;
* a memo index larger than the number of opcodes before it (a pickler numbers its entries as it
  stores them; ``LONG_BINPUT 2**26`` alone would make the unpickler allocate 1 GB), a ``GET`` of an
  index never stored, and stack underflows.

Then the value is converted and checked (:func:`check_arrays`) visiting each object once, however
often the memo shares it (a few hundred bytes can share a tuple ``3**40`` ways); the result must be
(nested) tuples/lists of numeric arrays. Every problem is a one-line :class:`BadInputError` naming
the source.

:func:`load_records` reads the "python version" of CIFAR-10/100 the same way: a dict of arrays, ints,
strings and lists of them. Its replay also accepts the dict opcodes (``EMPTY_DICT``, ``DICT``,
``SETITEM(S)``), with every key a literal (a string or a number): a tuple key would make the unpickler
hash it, and hashing a tuple shared ``3**40`` ways through the memo costs that many steps.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
from typing import Any

import numpy as np

from align.errors import BadInputError

MAX_DEPTH = 32  # the classic file nests 6 deep (counting the arguments of each numpy call)
MAX_OPCODES = 100_000  # the classic file has 151; an array takes some 20 whatever its size

_LITERALS = frozenset({
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "FLOAT", "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES",
    "BINBYTES8", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "GLOBAL",
})
_TUPLES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_DICT_OPS = frozenset({"EMPTY_DICT", "DICT", "SETITEM", "SETITEMS"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})


class _Refused(Exception):
    """A reason to refuse the file (becomes the BadInputError's text)."""


class _Replay:
    """The unpickler's stack and memo, holding object numbers; per object its containment depth and
    the objects that contain it (so a depth raised later reaches them too)."""

    def __init__(self, records: bool = False) -> None:
        self.records = records  # dicts with literal keys allowed (load_records)
        self.literals: set[int] = set()  # objects made by a literal opcode: the only allowed dict keys
        self.depth: list[int] = []
        self.parents: dict[int, list[int]] = {}
        self.stack: list[int] = []
        self.marks: list[int] = []
        self.memo: dict[int, int] = {}
        self.pos = 0
        self.count = 0  # opcodes read so far

    def fail(self, why: str) -> _Refused:
        return _Refused(f"{why} at byte {self.pos}")

    def new(self, children: list[int], empty_depth: int = 0) -> int:
        obj = len(self.depth)
        self.depth.append(max((self.depth[c] for c in children), default=empty_depth - 1) + 1)
        for child in children:
            self.parents.setdefault(child, []).append(obj)
        if self.depth[obj] > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        return obj

    def contain(self, container: int, child: int) -> None:
        """``child`` now lies inside ``container`` (APPEND, BUILD): raise depths up the containers."""
        self.parents.setdefault(child, []).append(container)
        work = [(container, self.depth[child] + 1)]
        while work:
            obj, depth = work.pop()
            if self.depth[obj] >= depth:
                continue
            if depth > MAX_DEPTH:
                raise self.fail(f"nested deeper than {MAX_DEPTH} levels (or a structure that contains itself)")
            self.depth[obj] = depth
            work.extend((parent, depth + 1) for parent in self.parents.get(obj, ()))

    def fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def pop(self, n: int = 1) -> list[int]:
        if len(self.stack) - self.fence() < n:
            raise self.fail("stack underflow")
        items = self.stack[len(self.stack) - n:]
        del self.stack[len(self.stack) - n:]
        return items

    def top(self) -> int:
        if len(self.stack) <= self.fence():
            raise self.fail("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list[int]:
        if not self.marks:
            raise self.fail("no MARK to pop to")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def step(self, name: str, arg: Any) -> None:
        if name in _LITERALS:
            self.stack.append(self.new([]))
            if name != "GLOBAL":
                self.literals.add(self.stack[-1])
        elif self.records and name in _DICT_OPS:
            self.dict_step(name)
        elif name in ("PROTO", "FRAME"):
            if name == "PROTO" and not 0 <= arg <= pickle.HIGHEST_PROTOCOL:
                raise self.fail(f"unsupported pickle protocol {arg}")
        elif name == "MARK":
            self.marks.append(len(self.stack))
        elif name == "POP":
            if len(self.stack) > self.fence():
                self.stack.pop()
            elif self.marks:
                self.marks.pop()
            else:
                raise self.fail("stack underflow")
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.stack.append(self.top())
        elif name == "STACK_GLOBAL":
            self.pop(2)
            self.stack.append(self.new([]))
        elif name in ("EMPTY_TUPLE", "EMPTY_LIST"):
            self.stack.append(self.new([], empty_depth=1))
        elif name in _TUPLES:
            self.stack.append(self.new(self.pop(_TUPLES[name]), empty_depth=1))
        elif name in ("TUPLE", "LIST"):
            self.stack.append(self.new(self.pop_mark(), empty_depth=1))
        elif name in ("APPEND", "BUILD"):
            child = self.pop()[0]
            self.contain(self.top(), child)
        elif name == "APPENDS":
            children = self.pop_mark()
            target = self.top()
            for child in children:
                self.contain(target, child)
        elif name == "REDUCE":
            self.stack.append(self.new(self.pop(2)))
        elif name in _PUTS or name == "MEMOIZE":
            index = len(self.memo) if name == "MEMOIZE" else arg
            if not 0 <= index <= self.count:
                raise self.fail(f"memo index {index} is beyond the {self.count} opcodes before it "
                                "(a pickler numbers its memo entries as it stores them)")
            self.memo[index] = self.top()
        elif name in _GETS:
            if arg not in self.memo:
                raise self.fail(f"memo index {arg} was never stored")
            self.stack.append(self.memo[arg])
        else:
            raise self.fail(f"opcode {name}, which a pickle of numeric arrays never uses,")

    def dict_step(self, name: str) -> None:
        """``EMPTY_DICT``, ``DICT``, ``SETITEM``, ``SETITEMS``, each key checked to be a literal."""
        if name == "EMPTY_DICT":
            self.stack.append(self.new([], empty_depth=1))
            return
        items = self.pop_mark() if name in ("DICT", "SETITEMS") else self.pop(2)
        if len(items) % 2:
            raise self.fail(f"{name} with an odd number of items")
        if any(key not in self.literals for key in items[::2]):
            raise self.fail(f"{name} with a key that is not a string or a number")
        if name == "DICT":
            self.stack.append(self.new(items, empty_depth=1))
            return
        target = self.top()
        for child in items:
            self.contain(target, child)

    def stop(self) -> None:
        if self.marks or len(self.stack) != 1:
            raise self.fail("STOP with a malformed stack")


def scan(data: bytes, records: bool = False) -> int:
    """Replay the opcodes of ``data`` once (see the module docstring); the number of opcodes, or
    :class:`_Refused`. Time and memory are linear in ``len(data)``. ``records`` also accepts dicts."""
    replay = _Replay(records)
    count = 0
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            count += 1
            replay.pos, replay.count = (pos if pos is not None else 0), count
            if count > MAX_OPCODES:
                raise replay.fail(f"more than {MAX_OPCODES} opcodes")
            if op.name == "STOP":
                replay.stop()
                return count
            replay.step(op.name, arg)
    except ValueError as err:  # genops: unknown opcode, truncated argument, bad text argument
        raise _Refused(str(err)) from None
    raise _Refused("no STOP opcode (the pickle is truncated)")


class _NDArrayType:
    """Stands for ``numpy.ndarray``: only the first argument of ``_reconstruct`` (calling it is refused)."""

    __slots__ = ()


_NDARRAY = _NDArrayType()
_DTYPE_SPEC = re.compile(r"^[<>|=]?[biuf][1-9][0-9]?$")
_BYTE_ORDERS = ("<", ">", "|", "=")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _DType:
    """Stands for ``numpy.dtype(spec, align, copy)`` and its pickled state: a plain number type, with
    every other field of the state (sub-array, names, fields, flags, metadata) required empty."""

    __slots__ = ("dtype",)

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(spec, str) or not _DTYPE_SPEC.match(spec):
            raise pickle.UnpicklingError(f"dtype {str(spec)[:20]!r} is not a plain number type")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state: Any) -> None:
        if (not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4)
                or state[1] not in _BYTE_ORDERS or any(v is not None for v in state[2:5])
                or not all(_int(v) for v in state[5:8]) or state[5] not in (-1, self.dtype.itemsize)
                or state[7] != 0 or (len(state) == 9 and state[8] is not None)):
            raise pickle.UnpicklingError("a dtype state other than that of a plain number type")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class _Array:
    """Stands for ``_reconstruct(ndarray, ...)``; its state (shape, dtype, order, bytes) is checked
    and the array made with :func:`numpy.frombuffer`, so numpy never sees the file's state itself."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4 or self.array is not None:
            raise pickle.UnpicklingError("an array state other than (version, shape, dtype, fortran, bytes)")
        shape, dtype, fortran, data = state
        if (not isinstance(shape, tuple) or len(shape) > MAX_DEPTH or not all(_int(n) and n >= 0 for n in shape)
                or not isinstance(dtype, _DType) or fortran not in (0, 1)):
            raise pickle.UnpicklingError("an array state with a bad shape, dtype or order")
        if isinstance(data, str):
            data = data.encode("latin1")  # a Python 2 str, decoded as latin1 by the unpickler
        if not isinstance(data, bytes):
            raise pickle.UnpicklingError(f"array data is a {type(data).__name__}, not bytes")
        count = 1
        for n in shape:
            count *= n
        if count * dtype.dtype.itemsize != len(data):
            raise pickle.UnpicklingError(f"array of shape {shape} needs {count * dtype.dtype.itemsize} bytes, "
                                         f"the file gives {len(data)}")
        self.array = np.frombuffer(data, dtype=dtype.dtype).reshape(shape, order="F" if fortran else "C")


def _reconstruct(kind: Any, shape: Any, typecode: Any) -> _Array:
    if kind is not _NDARRAY or typecode not in ("b", b"b"):
        raise pickle.UnpicklingError("_reconstruct of something other than a plain ndarray")
    return _Array()


_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct, ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _DType,
}


class _NumpyOnly(pickle.Unpickler):
    """Resolves the four names a pickled array needs to the stand-ins above, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} (only numpy arrays are read)")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def _resolve(value: Any, where: str, done: dict[int, Any], depth: int = 0) -> Any:
    """``value`` with each :class:`_Array` replaced by its array (shared parts converted once)."""
    if id(value) in done:
        return done[id(value)]
    if depth > MAX_DEPTH:
        raise _Refused(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, _Array):
        if value.array is None:
            raise _Refused(f"{where} is an array without its contents")
        out: Any = value.array
    elif isinstance(value, (tuple, list)):
        out = type(value)(_resolve(item, f"{where}[{i}]", done, depth + 1) for i, item in enumerate(value))
    else:
        kind = {_DType: "dtype", _NDArrayType: "ndarray type"}.get(type(value), type(value).__name__)
        raise _Refused(f"{where} is a {kind}, not an array or tuple")
    done[id(value)] = out
    return out


def check_arrays(value: Any, where: str, budget: int) -> int:
    """Refuse anything but (nested) tuples/lists of plain numeric arrays holding ``budget`` bytes at
    most; each object is visited once, whatever the sharing. Returns the number of objects visited."""
    seen: set[int] = set()
    todo: list[tuple[Any, str, int]] = [(value, where, 0)]
    total = 0
    while todo:
        item, at, depth = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if depth > MAX_DEPTH:
            raise _Refused(f"{at} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, np.ndarray):
            dtype = item.dtype
            if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
                raise _Refused(f"{at} is an array of dtype kind {dtype.kind!r}, not plain numbers")
            total += item.nbytes
            if total > budget:
                raise _Refused(f"its arrays claim more than the file's {budget} bytes (at {at})")
        elif isinstance(item, (tuple, list)):
            todo.extend((child, f"{at}[{i}]", depth + 1) for i, child in enumerate(item))
        else:
            raise _Refused(f"{at} is a {type(item).__name__}, not an array or tuple")
    return len(seen)


def load_arrays(data: bytes, source: str) -> Any:
    """Nested tuples/lists of numeric numpy arrays from pickle bytes, or a one-line error naming ``source``."""
    try:
        scan(data)
        value = _resolve(_NumpyOnly(io.BytesIO(data), encoding="latin1").load(), "the pickle", {})
        check_arrays(value, "the pickle", len(data))
    except Exception as err:  # noqa: BLE001  (the file is untrusted: whatever it makes fail is its fault)
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise BadInputError(f"{source}: not a pickle of numeric arrays ({reason})") from None
    return value


_RECORD_LEAVES = (int, float, str, bytes, type(None))


def _resolve_record(value: Any, where: str, done: dict[int, Any], depth: int = 0) -> Any:
    """Like :func:`_resolve`, for :func:`load_records`: dicts and scalar leaves are kept too."""
    if id(value) in done:
        return done[id(value)]
    if depth > MAX_DEPTH:
        raise _Refused(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        out: Any = {key: _resolve_record(item, f"{where}[{key!r}]", done, depth + 1) for key, item in value.items()}
    elif isinstance(value, (tuple, list)) and all(isinstance(item, _RECORD_LEAVES) for item in value):
        out = value  # a list of labels or file names: nothing to convert, and no call per item
    elif isinstance(value, (_Array, tuple, list)):
        out = _resolve(value, where, done, depth) if isinstance(value, _Array) else type(value)(
            _resolve_record(item, f"{where}[{i}]", done, depth + 1) for i, item in enumerate(value))
    elif isinstance(value, _RECORD_LEAVES):
        out = value
    else:
        kind = {_DType: "dtype", _NDArrayType: "ndarray type"}.get(type(value), type(value).__name__)
        raise _Refused(f"{where} is a {kind}, not an array, number, string, list or dict")
    done[id(value)] = out
    return out


def load_records(data: bytes, source: str) -> Any:
    """A dict (or list/tuple) of numeric arrays, numbers, strings and lists of them from pickle bytes,
    read like :func:`load_arrays` (nothing executed, linear time); a one-line error naming ``source``.
    Python 2 strings come back as ``str`` (latin1), bytes as ``bytes``."""
    try:
        scan(data, records=True)
        value = _resolve_record(_NumpyOnly(io.BytesIO(data), encoding="latin1").load(), "the pickle", {})
        budget = len(data)
        for array in _arrays_in(value):
            budget -= array.nbytes
            if budget < 0:
                raise _Refused("its arrays claim more than the file's bytes")
    except Exception as err:  # noqa: BLE001  (the file is untrusted: whatever it makes fail is its fault)
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise BadInputError(f"{source}: not a pickle of arrays, numbers and strings ({reason})") from None
    return value


def _arrays_in(value: Any) -> list[np.ndarray]:
    """Every distinct array inside ``value`` (each container visited once, whatever the sharing)."""
    seen: set[int] = set()
    todo, found = [value], []
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            if item.dtype.kind not in "biuf":
                raise _Refused(f"an array of dtype kind {item.dtype.kind!r}, not plain numbers")
            found.append(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, (tuple, list)):
            todo.extend(i for i in item if not isinstance(i, _RECORD_LEAVES))
    return found
