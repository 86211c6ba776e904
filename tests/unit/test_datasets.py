"""Datasets: split recipes, subsamples, emoji concept-disjointness and bad user input, on tiny data.

Everything except ``digits`` (bundled with scikit-learn) is synthetic and built in ``tmp_path``.
"""

from __future__ import annotations

import gzip
import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from align.data import load_templates
from align.data.emoji import Emoji
from align.data.fashion_mnist import FashionMNIST, read_idx
from align.data.mnist import MNIST
from align.data.subsample import allocate, seeded_order, subsample_indices
from align.errors import BadInputError, UnknownNameError
from align.registry import DATASETS

# ---- helpers ------------------------------------------------------------------------------------


def _png(path: Path, mode: str = "RGBA", color: object = (255, 0, 0, 128)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (8, 8), color).save(path)
    return path


def _corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return path


# ---- seeded recipes ------------------------------------------------------------------------------


def test_seeded_order_is_pinned() -> None:
    """The recipe is hash-based and must not drift: a change here needs a dataset version bump."""
    assert seeded_order(["a", "b", "c", "d"]).tolist() == seeded_order(["a", "b", "c", "d"]).tolist()
    assert seeded_order([str(i) for i in range(6)]).tolist() == [4, 3, 2, 0, 5, 1]


def test_allocate_largest_remainder() -> None:
    assert allocate(np.array([5, 3, 2]), 5).tolist() == [3, 1, 1]  # 2.5, 1.5, 1.0 → tie to lower index
    assert allocate(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]
    assert allocate(np.array([0, 10]), 4).tolist() == [0, 4]
    counts = np.array([7, 13, 29, 1])
    for n in range(51):
        quotas = allocate(counts, n)
        assert quotas.sum() == n and (quotas <= counts).all() and (quotas >= 0).all()


def test_subsample_indices_stratified_sorted() -> None:
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    keys = [f"k{i}" for i in range(100)]
    idx = subsample_indices(labels, keys, 10)
    assert np.bincount(labels[idx], minlength=4).tolist() == [4, 3, 2, 1]
    assert (np.diff(idx) > 0).all()
    assert subsample_indices(None, keys, 7).tolist() == subsample_indices(None, keys, 7).tolist()


# ---- digits (real, bundled) ----------------------------------------------------------------------


def test_digits_splits_disjoint_stratified_deterministic() -> None:
    dataset = DATASETS.create("digits")
    train, test = dataset.load("train"), dataset.load("test")
    assert (len(train), len(test)) == (901, 896)
    assert set(train.item_ids).isdisjoint(test.item_ids)
    assert len(set(train.item_ids) | set(test.item_ids)) == 1797
    per_class_train = np.bincount(train.labels.labels, minlength=10)
    per_class_test = np.bincount(test.labels.labels, minlength=10)
    assert (per_class_train - per_class_test).tolist() == [int(n % 2) for n in per_class_train + per_class_test]
    again = DATASETS.create("digits").load("train")
    assert again.item_ids == train.item_ids and (again.labels.labels == train.labels.labels).all()
    assert train.labels.class_names[3] == "three" and all("{c}" in t for t in train.labels.templates)
    image = train.load_image(0)
    assert image.mode == "L" and image.size == (8, 8)
    pixels = np.asarray(image)
    assert pixels[0, 0] == 255 and pixels.min() < 128  # dark digit on white: corners are background


def test_subsample_split_name_version_and_stratification() -> None:
    dataset = DATASETS.create("digits")
    test = dataset.load("test")
    sub = dataset.load("test@100")
    assert sub.split == "test@100" and sub.version == test.version + "+sub1" and len(sub) == 100
    assert set(sub.item_ids) <= set(test.item_ids)
    assert sub.item_ids == dataset.load("test@100").item_ids
    expected = np.bincount(test.labels.labels, minlength=10) * 100 / len(test)
    assert np.abs(np.bincount(sub.labels.labels, minlength=10) - expected).max() < 1
    position = {item: i for i, item in enumerate(test.item_ids)}
    assert [position[i] for i in sub.item_ids] == sorted(position[i] for i in sub.item_ids)  # parent order
    first = sub.item_ids[0]
    assert np.array_equal(np.asarray(sub.load_image(0)), np.asarray(test.load_image(position[first])))
    assert len(dataset.load("test@896")) == 896


def test_subsample_and_split_errors() -> None:
    dataset = DATASETS.create("digits")
    with pytest.raises(BadInputError, match=r"'test' has 896 items.*test@5000"):
        dataset.load("test@5000")
    with pytest.raises(BadInputError, match="NAME@N"):
        dataset.load("test@zero")
    with pytest.raises(BadInputError, match="NAME@N"):
        dataset.load("test@0")
    with pytest.raises(UnknownNameError, match="did you mean 'test'"):
        dataset.load("tset")


# ---- Fashion-MNIST / MNIST file formats (synthetic) -----------------------------------------------


def _idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_idx_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        _idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    dataset = FashionMNIST(tmp_path)
    train, test = dataset.load("train"), dataset.load("test")
    assert (len(train), len(test)) == (20, 10)
    assert train.labels.class_names[0] == "T-shirt/top" and train.labels.class_names[9] == "Ankle boot"
    assert test.item_ids[0] == "t10k/0" and train.load_image(3).size == (28, 28)
    assert np.array_equal(np.asarray(train.load_image(3)), read_idx(tmp_path / "train-images-idx3-ubyte.gz")[3])
    assert np.bincount(dataset.load("train@10").labels.labels).tolist() == [1] * 10
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x00\x00\x09\x01" + b"\x00" * 8)
    with pytest.raises(BadInputError, match="bad.gz: not an unsigned-byte IDX"):
        read_idx(bad)


def test_mnist_from_pickle(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    parts = tuple((rng.random((n, 784), dtype=np.float32), np.arange(n) % 10) for n in (30, 10, 20))
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(parts, f)
    dataset = MNIST(tmp_path)
    sizes = [len(dataset.load(split)) for split in ("train", "val", "test")]
    assert sizes == [30, 10, 20]
    val = dataset.load("val")
    assert val.labels.class_names[:2] == ("zero", "one") and val.item_ids[1] == "val/1"
    expected = np.rint(parts[1][0][2].reshape(28, 28) * 256).clip(0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(val.load_image(2)), expected)


# ---- emoji (synthetic asset folders) -------------------------------------------------------------

_CATEGORIES = [("Smileys & Emotion", "face-smiling"), ("Animals & Nature", "animal-mammal"),
               ("Food & Drink", "food-fruit")]


def _emoji_records(n: int = 24) -> list[dict]:
    records = []
    for i in range(n):
        category, subcategory = _CATEGORIES[i % 3]
        code = f"1F{600 + i:03X}"
        records.append({
            "name": f"THING NUMBER {i}", "unified": code, "image": f"{code.lower()}.png",
            "short_name": f"thing_{i}", "short_names": [f"thing_{i}", f"thing number {i}", f"t{i}"],
            "category": category, "subcategory": subcategory, "sort_order": n - i,
            "has_img_google": i != 5, "has_img_twitter": i % 4 != 0,
            "skin_variations": {"1F3FB": {"unified": f"{code}-1F3FB", "image": f"{code.lower()}-1f3fb.png"}},
        })
    return records


def _emoji_root(tmp_path: Path, style: str, records: list[dict], missing: tuple[int, ...] = ()) -> Path:
    root = tmp_path / style
    root.mkdir()
    (root / "emoji.json").write_text(json.dumps(records))
    for i, record in enumerate(records):
        if record[f"has_img_{style}"] and i not in missing:
            mode, color = ("P", 3) if i == 1 else ("RGBA", (i, 200, 0, 100))  # every picture its own
            _png(root / "64" / record["image"], mode, color)
            _png(root / "64" / record["skin_variations"]["1F3FB"]["image"])
    return root


def test_emoji_items_captions_labels(tmp_path: Path) -> None:
    records = _emoji_records()
    dataset = Emoji("google", root=_emoji_root(tmp_path, "google", records, missing=(7,)))
    everything = dataset.load("all")
    assert len(everything) == 22  # 24 - no google image (5) - file missing (7); variations not items
    codes = [r["unified"] for r in records]
    assert codes[5] not in everything.item_ids and codes[7] not in everything.item_ids
    assert everything.item_ids[0] == codes[-1]  # sort_order, not file order
    position = everything.item_ids.index(codes[2])
    assert everything.captions[position] == ["thing number 2", "thing 2", "t2"]  # name first, deduplicated
    assert everything.labels.class_names[everything.labels.labels[position]] == "Food & Drink"
    sub = everything.extra_labels["subcategory"]
    assert sub.class_names[sub.labels[position]] == "food fruit"
    assert set(sub.class_names) == {"face smiling", "animal mammal", "food fruit"}
    assert sub.templates == load_templates("emoji")
    image = everything.load_image(position)
    assert image.mode == "RGBA" and image.getpixel((0, 0)) == (2, 200, 0, 100)
    assert everything.load_image(everything.item_ids.index(codes[1])).mode == "RGBA"  # palette converted


def test_emoji_halves_disjoint_and_identical_across_styles(tmp_path: Path) -> None:
    records = _emoji_records()
    google = Emoji("google", root=_emoji_root(tmp_path, "google", records))
    twitter = Emoji("twitter", root=_emoji_root(tmp_path, "twitter", records))
    halves = {}
    for dataset in (google, twitter):
        anchors, test = dataset.load("anchors"), dataset.load("test")
        assert set(anchors.item_ids).isdisjoint(test.item_ids)
        assert set(anchors.item_ids) | set(test.item_ids) == set(dataset.load("all").item_ids)
        assert anchors.labels.class_names == test.labels.class_names  # same class list in both halves
        halves[dataset.style] = (set(anchors.item_ids), set(test.item_ids))
    assert len(halves["google"][0]) + len(halves["google"][1]) == 23
    both = set().union(*halves["google"]) & set().union(*halves["twitter"])
    assert both and all((code in halves["google"][0]) == (code in halves["twitter"][0]) for code in both)
    assert Emoji("google", root=tmp_path / "google").load("anchors").item_ids == google.load("anchors").item_ids


def test_emoji_anchors_leave_out_a_picture_also_in_test(tmp_path: Path) -> None:
    """Plant one picture under two names, one in each half: the anchors drop their copy, the test half
    keeps its own, and no image is left on both sides."""
    from align.data.duplicates import check_no_shared_images, shared_images

    records = _emoji_records()
    root = _emoji_root(tmp_path, "google", records)
    clean = Emoji("google", root=root)
    anchors, test = clean.load("anchors"), clean.load("test")
    assert not shared_images(anchors, test)
    twin_anchor, twin_test = anchors.item_ids[3], test.item_ids[5]
    image_of = {r["unified"]: r["image"] for r in records}
    (root / "64" / image_of[twin_anchor]).write_bytes((root / "64" / image_of[twin_test]).read_bytes())
    planted = Emoji("google", root=root)
    with pytest.raises(BadInputError, match="pixel-identical") as err:  # what the split would leak
        check_no_shared_images(planted.load("all"), test)
    assert "\n" not in str(err.value)
    anchors_now, test_now = planted.load("anchors"), planted.load("test")
    assert anchors_now.item_ids == [c for c in anchors.item_ids if c != twin_anchor]
    assert test_now.item_ids == test.item_ids
    check_no_shared_images(anchors_now, test_now)


def test_emoji_registered_names_use_the_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import align.assets

    root = _emoji_root(tmp_path, "twitter", _emoji_records())
    asked = []
    monkeypatch.setattr(align.assets, "require", lambda name: asked.append(name) or root)
    split = DATASETS.create("emoji.twitter").load("test@4")
    assert asked == ["emoji-twitter"] and split.dataset == "emoji.twitter" and len(split) == 4
    assert DATASETS.create("emoji").style == "google"


# ---- folder:<path> --------------------------------------------------------------------------------


def _image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    for i in range(6):
        _png(root / "golden_retriever" / f"g{i}.png", "RGB", (200, 150, 0))
    for i in range(4):
        _png(root / "cat" / "nested" / f"c{i}.png", "RGB", (50, 50, 50))
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_folder_splits(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    dataset = DATASETS.create(f"folder:{root}")
    everything, train, test = (dataset.load(s) for s in ("all", "train", "test"))
    assert everything.labels.class_names == ("cat", "golden retriever")
    assert (len(everything), len(train), len(test)) == (10, 5, 5)
    assert np.bincount(train.labels.labels).tolist() == [2, 3]
    assert set(train.item_ids).isdisjoint(test.item_ids) and "cat/nested/c0.png" in everything.item_ids
    assert everything.labels.templates == load_templates("default")
    assert everything.load_image(0).mode == "RGB" and everything.skipped == 0


def test_folder_bad_image_and_skip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _image_folder(tmp_path)
    version = DATASETS.create(f"folder:{root}").version
    bad = _corrupt(root / "cat" / "broken.png")
    with pytest.raises(BadInputError, match=rf"{bad}: not a readable image"):
        DATASETS.create(f"folder:{root}").load("all")
    with caplog.at_level(logging.WARNING, logger="align.data.badrows"):
        dataset = DATASETS.create(f"folder:{root}", skip_bad=True)
        assert dataset.version != version
        assert len(dataset.load("all")) == 10 and dataset.load("train").skipped == 1
    assert len([r for r in caplog.records if "skipped 1 bad row" in r.getMessage()]) == 1


# ---- manifest:<path> ------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    for name in ("a.png", "b.png", "c.png", "d.png"):
        _png(tmp_path / "img" / name, "RGBA")
    _corrupt(tmp_path / "img" / "bad.png")
    return tmp_path


def test_manifest_csv_groups_captions(images: Path) -> None:
    path = _write(images / "m.csv", "image,caption,label\n"
                  "img/a.png,a red square,red\nimg/b.png,a blue one,blue\nimg/a.png,\"red, again\",red\n"
                  "\nimg/c.png,third,red\nimg/d.png,fourth,blue\n")
    split = DATASETS.create(f"manifest:{path}").load("all")
    assert split.item_ids == ["img/a.png", "img/b.png", "img/c.png", "img/d.png"]
    assert split.captions[0] == ["a red square", "red, again"]
    assert split.labels.class_names == ("blue", "red") and split.labels.labels.tolist() == [1, 0, 1, 0]
    assert split.load_image(0).mode == "RGBA"
    train = DATASETS.create(f"manifest:{path}").load("train")
    assert sorted(train.labels.labels.tolist()) == [0, 1]


def test_manifest_jsonl_and_classes(images: Path) -> None:
    path = _write(images / "m.jsonl", '{"image": "img/a.png", "captions": ["x", "y"], "label": "cat"}\n\n'
                  '{"image": "img/b.png", "caption": "z", "label": "dog", "source": "ignored"}\n')
    classes = _write(images / "classes.txt", "dog\ncat\nbird\n")
    split = DATASETS.create(f"manifest:{path}", classes=str(classes)).load("all")
    assert split.captions == [["x", "y"], ["z"]]
    assert split.labels.class_names == ("dog", "cat", "bird") and split.labels.labels.tolist() == [1, 0]
    listed = DATASETS.create(f"manifest:{path}", classes=["cat", "dog"]).load("all")
    assert listed.labels.labels.tolist() == [0, 1]


@pytest.mark.parametrize(("row", "message"), [
    ("img/missing.png,a caption,red", r"m\.csv, line 3: no such image .*missing\.png"),
    ("img/bad.png,a caption,red", r"m\.csv, line 3: .*bad\.png: not a readable image"),
    ("img/c.png,,red", r"m\.csv, line 3: empty caption"),
    ("img/c.png,a caption,green", r"m\.csv, line 3: label 'green' is not in the class list \(2 classes: red, blue\)"),
    ("img/c.png,a caption", r"m\.csv, line 3: expected 3 fields"),
    ("img/a.png,a caption,blue", r"m\.csv, line 3: label 'blue' contradicts label 'red' .* line 2"),
])
def test_manifest_csv_bad_rows(images: Path, row: str, message: str) -> None:
    path = _write(images / "m.csv", f"image,caption,label\nimg/a.png,first,red\n{row}\nimg/d.png,last,blue\n")
    with pytest.raises(BadInputError, match=message) as info:
        DATASETS.create(f"manifest:{path}", classes=["red", "blue"]).load("all")
    assert "\n" not in str(info.value)
    split = DATASETS.create(f"manifest:{path}", classes=["red", "blue"], skip_bad=True).load("test")
    assert split.skipped == 1


@pytest.mark.parametrize(("line", "message"), [
    ('{"image": "img/missing.png", "captions": ["x"]}', r"m\.jsonl, line 2: no such image"),
    ('{"image": "img/bad.png", "captions": ["x"]}', r"m\.jsonl, line 2: .*not a readable image"),
    ('{"image": "img/c.png", "captions": ["x", " "]}', r"m\.jsonl, line 2: empty caption"),
    ('{"image": "img/c.png", "captions": ["x"], "label": "green"}', r"m\.jsonl, line 2: label 'green' is not in"),
    ('{"image": "img/c.png", "captions": ["x"]', r"m\.jsonl, line 2: not valid JSON"),
])
def test_manifest_jsonl_bad_rows(images: Path, line: str, message: str) -> None:
    path = _write(images / "m.jsonl", '{"image": "img/a.png", "captions": ["ok"], "label": "red"}\n'
                  f"{line}\n" + '{"image": "img/d.png", "captions": ["ok"], "label": "red"}\n')
    with pytest.raises(BadInputError, match=message):
        DATASETS.create(f"manifest:{path}", classes=["red"]).load("all")
    split = DATASETS.create(f"manifest:{path}", classes=["red"], skip_bad=True).load("all")
    assert split.skipped == 1 and split.item_ids == ["img/a.png", "img/d.png"]


def test_manifest_skip_bad_counts_and_warns_once(images: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(images / "m.csv", "image,caption\nimg/a.png,ok\nimg/missing.png,x\nimg/bad.png,y\n"
                  "img/b.png,\nimg/c.png,fine\n")
    with caplog.at_level(logging.WARNING, logger="align.data.badrows"):
        dataset = DATASETS.create(f"manifest:{path}", skip_bad=True)
        everything = dataset.load("all")
        dataset.load("train")
    assert everything.skipped == 3 and everything.item_ids == ["img/a.png", "img/c.png"]
    assert everything.labels is None
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 3 bad row(s)" in warnings[0] and "line 3" in warnings[0]


def test_manifest_header_errors(images: Path) -> None:
    path = _write(images / "m.csv", "image,captions\nimg/a.png,x\n")
    with pytest.raises(BadInputError, match=r"m\.csv, line 1: .*unknown: captions"):
        DATASETS.create(f"manifest:{path}").load("all")
    with pytest.raises(BadInputError, match="must be .csv or .jsonl"):
        DATASETS.create(f"manifest:{_write(images / 'm.txt', 'x')}")


# ---- templates and import cost --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits", "mnist", "fashion_mnist", "emoji", "default"])
def test_templates_load(name: str) -> None:
    templates = load_templates(name)
    assert templates and all("{c}" in t and not t.startswith("#") for t in templates)
    assert templates[0].format(c="x")


def test_unknown_templates() -> None:
    with pytest.raises(UnknownNameError, match="nope"):
        load_templates("nope")


def test_import_is_cheap() -> None:
    code = "import sys, align.data; assert not {'torch', 'sklearn'} & set(sys.modules), sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
