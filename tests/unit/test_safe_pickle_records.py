"""``safe_pickle.load_records``: CIFAR's pickled dicts read without running anything, in linear time."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from bad_input_checks import fails
from layout_fixtures import cifar10_files, write_folder

from align.data import safe_pickle
from align.errors import BadInputError
from align.registry import DATASETS


def _string(s: bytes) -> bytes:
    return (b"U" + bytes([len(s)]) + s) if len(s) < 256 else (b"T" + struct.pack("<i", len(s)) + s)


def _array(values: np.ndarray) -> bytes:
    """A uint8 array as Python 2's cPickle (protocol 2) wrote it, numpy's _reconstruct and a STRING state."""
    shape = b"".join(b"J" + struct.pack("<i", n) for n in values.shape)
    return (b"cnumpy.core.multiarray\n_reconstruct\n" b"cnumpy\nndarray\n" b"K\x00\x85" + _string(b"b")
            + b"\x87R(K\x01(" + shape + b"tcnumpy\ndtype\n" + _string(b"u1") + b"K\x00K\x01\x87R"
            + b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + _string(values.tobytes()) + b"tb")


def _py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR-10 batch in the official files' own encoding: a dict with STRING keys, SETITEMS, APPENDS."""
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    names = b"](" + b"".join(_string(b"img%d.png" % i) for i in range(len(labels))) + b"e"
    return (b"\x80\x02}q\x01(" + _string(b"data") + _array(data) + _string(b"labels") + label_list
            + _string(b"batch_label") + _string(b"testing batch 1 of 1") + _string(b"filenames") + names + b"u.")


def test_a_python2_format_batch_loads(tmp_path: Path) -> None:
    data = (np.arange(2 * 3072) % 251).astype(np.uint8).reshape(2, 3072)
    record = safe_pickle.load_records(_py2_batch(data, [7, 2]), "test_batch")
    assert record["labels"] == [7, 2] and record["filenames"] == ["img0.png", "img1.png"]
    assert np.array_equal(record["data"], data)
    files = cifar10_files()
    files["test_batch"] = _py2_batch(data, [7, 2])
    test = DATASETS.create("cifar10", root=str(write_folder(tmp_path, "cifar-10-batches-py", files))).load("test")
    assert test.labels.labels.tolist() == [7, 2]
    assert test.load_image(1).getpixel((0, 0)) == tuple(int(data[1, 1024 * c]) for c in range(3))


def test_tuple_keys_are_refused_before_anything_is_hashed() -> None:
    """A key shared 3**30 ways through the memo would cost that many steps to hash."""
    nested = b"\x80\x02K\x01"
    for _ in range(30):  # under MAX_DEPTH (32), so only the key rule stops it
        nested += b"q\x00h\x00h\x00\x87"  # BINPUT 0, BINGET 0 twice, TUPLE3: each level triples the tree
    data = b"\x80\x02}" + nested[2:] + b"K\x00s."  # {huge tuple: 0}
    with pytest.raises(BadInputError, match="key that is not a string or a number"):
        safe_pickle.load_records(data, "crafted")


def test_a_dict_containing_itself_is_refused() -> None:
    cycle: dict = {}
    cycle["self"] = cycle
    with pytest.raises(BadInputError, match="contains itself"):
        safe_pickle.load_records(pickle.dumps(cycle, protocol=4), "cycle")


def test_load_arrays_still_refuses_dicts() -> None:
    fails(lambda: safe_pickle.load_arrays(pickle.dumps({"a": np.zeros(2)}, protocol=4), "mnist.pkl"),
          BadInputError, "mnist.pkl", "EMPTY_DICT")


def test_records_hold_only_arrays_numbers_and_strings() -> None:
    fails(lambda: safe_pickle.load_records(pickle.dumps({"a": {1, 2}}, protocol=4), "set.pkl"),
          BadInputError, "set.pkl")
    fails(lambda: safe_pickle.load_records(pickle.dumps({"a": np.array(["x"])}, protocol=4), "str-array.pkl"),
          BadInputError, "str-array.pkl")
