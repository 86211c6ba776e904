"""The standard benchmark layouts (COCO, Karpathy splits, ImageNet, CIFAR, CLIP_benchmark webdataset)
read from tiny fixtures written exactly in each layout; a wrong root is one line naming the layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from bad_input_checks import fails
from layout_fixtures import (CIFAR10_NAMES, cifar10_files, cifar100_files, clip_benchmark_wds, coco_official, image,
                             karpathy_coco, karpathy_flickr, write_archive, write_folder)

from align.errors import BadInputError, UnknownNameError
from align.registry import DATASETS

pytestmark = pytest.mark.usefixtures("isolated_home")  # file-hash caches go to an empty ALIGN_HOME


def test_karpathy_coco_splits_captions_and_ids(tmp_path: Path) -> None:
    coco = DATASETS.create("coco", root=str(karpathy_coco(tmp_path)))
    test = coco.load("test")
    assert len(test) == 2 and test.item_ids == ["val2014/COCO_val2014_000000000074.jpg",
                                                "val2014/COCO_val2014_000000000133.jpg"]
    assert test.captions == [["A dog lying down.", "A picture of a dog."], ["A child's bedroom."]]
    train = coco.load("train")
    assert len(train) == 2 and train.captions[0] == ["A plate of food.", "Broccoli on a plate."]  # stripped
    assert [len(coco.load(s)) for s in ("restval", "val")] == [1, 1]
    pixel = test.load_image(1).getpixel((0, 0))  # imgid 5's colour, up to JPEG's rounding
    assert np.abs(np.subtract(pixel, (5 * 37 % 256, 5 * 91 % 256, 5 * 13 % 256))).max() <= 3
    assert test.version != train.version and test.labels is None


@pytest.mark.parametrize(("name", "folder"), [("flickr30k", "flickr30k-images"), ("flickr8k", "Flicker8k_Dataset")])
def test_karpathy_flickr(tmp_path: Path, name: str, folder: str) -> None:
    flickr = DATASETS.create(name, root=str(karpathy_flickr(tmp_path, name, folder)))
    test = flickr.load("test")
    assert test.item_ids == ["1003.jpg", "1004.jpg", "1005.jpg"]
    assert test.captions[0] == [f"a photo 3 {k}" for k in range(5)]
    assert [len(flickr.load(s)) for s in ("train", "val")] == [2, 1]
    fails(lambda: flickr.load("restval"), UnknownNameError, "restval", "train, val, test")  # COCO's alone


def test_root_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_FLICKR30K_ROOT", str(karpathy_flickr(tmp_path, "flickr30k", "flickr30k-images")))
    assert len(DATASETS.create("flickr30k").load("test")) == 3


def test_a_changed_image_changes_the_split_version(tmp_path: Path) -> None:
    root = karpathy_coco(tmp_path)
    before = DATASETS.create("coco", root=str(root)).load("test").version
    image(root / "val2014" / "COCO_val2014_000000000133.jpg", 77)
    assert DATASETS.create("coco", root=str(root)).load("test").version != before


def test_a_missing_image_fails_or_is_skipped(tmp_path: Path) -> None:
    root = karpathy_coco(tmp_path)
    missing = root / "val2014" / "COCO_val2014_000000000074.jpg"
    missing.unlink()
    fails(lambda: DATASETS.create("coco", root=str(root)).load("test"), BadInputError, str(missing))
    split = DATASETS.create("coco", root=str(root), skip_bad=True).load("test")
    assert len(split) == 1 and split.skipped == 1


@pytest.mark.parametrize("year", [2014, 2017])
def test_coco_official_captions(tmp_path: Path, year: int) -> None:
    val = DATASETS.create(f"coco{year}", root=str(coco_official(tmp_path, year))).load("val")
    assert val.item_ids == ["000000397133.jpg", "000000037777.jpg"]  # images[] order, uncaptioned one left out
    assert val.captions == [["A man cooking."], ["A kitchen with a stove.", "An empty kitchen."]]
    fails(lambda: DATASETS.create(f"coco{year}", root=str(tmp_path)).load("train"), BadInputError,
          f"captions_train{year}.json", "COCO captions layout")


def test_cifar10_from_the_archive_and_the_folder_agree(tmp_path: Path) -> None:
    files = cifar10_files()
    write_archive(tmp_path / "a" / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
    write_folder(tmp_path / "f", "cifar-10-batches-py", files)
    splits = [DATASETS.create("cifar10", root=str(tmp_path / k)).load("train") for k in ("a", "f")]
    for train in splits:
        assert len(train) == 10 and train.labels.labels.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
        assert tuple(train.labels.class_names) == tuple(CIFAR10_NAMES) and len(train.labels.templates) == 18
        assert train.load_image(0).mode == "RGB" and train.load_image(0).getpixel((5, 7)) == (10, 229, 200)
        assert train.load_image(9).getpixel((0, 0)) == (51, 0, 200)  # batch 5, second image
    test = DATASETS.create("cifar10", root=str(tmp_path / "a")).load("test")
    assert test.labels.labels.tolist() == [3, 5, 3] and test.load_image(2).getpixel((31, 30)) == (202, 223, 200)


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    cifar = DATASETS.create("cifar100", root=str(write_folder(tmp_path, "cifar-100-python", cifar100_files())))
    train = cifar.load("train")
    assert train.labels.labels.tolist() == [4, 4, 99, 0] and train.labels.class_names[4] == "aquarium fish"
    assert train.label_set("coarse").labels.tolist() == [1, 1, 19, 4]
    assert len(train.label_set("coarse").class_names) == 20 and len(cifar.load("test")) == 2


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_cifar_pickles_are_never_executed(tmp_path: Path) -> None:
    files = cifar10_files()
    marker = tmp_path / "ran"
    files["test_batch"] = pickle.dumps({b"labels": [0], b"data": _Payload(marker)})
    write_folder(tmp_path, "cifar-10-batches-py", files)
    fails(lambda: DATASETS.create("cifar10", root=str(tmp_path)).load("test"), BadInputError, "test_batch",
          "refusing global")
    assert not marker.exists()


def test_cifar_bad_labels_are_one_line(tmp_path: Path) -> None:
    files = cifar10_files()
    files["test_batch"] = pickle.dumps({b"labels": [0, 10, 1], b"data": np.zeros((3, 3072), np.uint8)})
    write_folder(tmp_path, "cifar-10-batches-py", files)
    fails(lambda: DATASETS.create("cifar10", root=str(tmp_path)).load("test"), BadInputError, "'labels'", "0 to 9")


def _imagenet(root: Path, folders: list[str]) -> Path:
    for i, folder in enumerate(folders):
        image(root / folder / f"ILSVRC2012_val_{i + 1:08d}.JPEG", i)
    return root


def test_imagenet_style_variant(tmp_path: Path) -> None:
    root = _imagenet(tmp_path, ["n01440764", "n01443537", "n15075141"])
    image(root / "n01440764" / "ILSVRC2012_val_00000099.JPEG", 9)
    val = DATASETS.create(f"imagenet:{root}").load("val")
    assert tuple(val.labels.class_names) == ("tench", "goldfish", "toilet paper")
    assert val.labels.labels.tolist() == [0, 0, 1, 2] and len(val.labels.templates) == 80
    assert val.labels.templates[0] == "a bad photo of a {c}." and val.split == "val"
    v2 = DATASETS.create(f"imagenet:{_imagenet(tmp_path / 'v2', ['0', '1', '999'])}").load("val")
    assert tuple(v2.labels.class_names) == ("tench", "goldfish", "toilet paper")


def test_imagenet1k_needs_every_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from align.data.imagenet import openai_metadata

    wnids = openai_metadata()[0]
    root = _imagenet(tmp_path, list(wnids))
    monkeypatch.setenv("ALIGN_IMAGENET_ROOT", str(root))
    val = DATASETS.create("imagenet1k").load("val")
    assert len(val) == 1000 and val.labels.labels.tolist() == list(range(1000))
    assert val.labels.class_names[0] == "tench" and len(val.labels.class_names) == 1000
    for path in (root / wnids[5]).iterdir():
        path.unlink()
    (root / wnids[5]).rmdir()
    fails(lambda: DATASETS.create("imagenet1k"), BadInputError, "999 of the 1000", wnids[5], "WordNet id")


def test_an_unknown_class_folder_names_the_layout(tmp_path: Path) -> None:
    root = _imagenet(tmp_path, ["n01440764", "cats"])
    fails(lambda: DATASETS.create(f"imagenet:{root}"), BadInputError, "cats", "WordNet id")


def test_clip_benchmark_webdataset(tmp_path: Path) -> None:
    root = clip_benchmark_wds(tmp_path, [[("s000", 0), ("s001", 2)], [("s002", 1)]], ["cat", "dog", "bird"],
                              ["a photo of a {c}.", "a {c}."])
    data = DATASETS.create(f"wds:{root}")
    assert data.splits == ("test",)
    test = data.load("test")
    assert test.item_ids == ["s000", "s001", "s002"] and test.labels.labels.tolist() == [0, 2, 1]
    assert tuple(test.labels.class_names) == ("cat", "dog", "bird")
    assert tuple(test.labels.templates) == ("a photo of a {c}.", "a {c}.")
    assert [test.load_image(i).getpixel((0, 0)) for i in range(3)] == [(20,) * 3, (40,) * 3, (60,) * 3]


def test_clip_benchmark_webdataset_missing_shard(tmp_path: Path) -> None:
    root = clip_benchmark_wds(tmp_path, [[("s000", 0)]], ["cat"], ["a {c}."])
    (root / "test" / "nshards.txt").write_text("2\n")
    fails(lambda: DATASETS.create(f"wds:{root}").load("test"), BadInputError, "1.tar", "CLIP_benchmark webdataset")
    (root / "test" / "nshards.txt").unlink()
    fails(lambda: DATASETS.create(f"wds:{root}"), BadInputError, "nshards.txt", "CLIP_benchmark webdataset")


@pytest.mark.parametrize(("name", "env", "layout"), [
    ("coco", "ALIGN_COCO_ROOT", "dataset_coco.json"), ("flickr30k", "ALIGN_FLICKR30K_ROOT", "dataset_flickr30k.json"),
    ("flickr8k", "ALIGN_FLICKR8K_ROOT", "dataset_flickr8k.json"), ("coco2017", "ALIGN_COCO_ROOT", "annotations"),
    ("imagenet1k", "ALIGN_IMAGENET_ROOT", "WordNet id"), ("cifar10", "ALIGN_CIFAR10_ROOT", "cifar-10-python.tar.gz"),
    ("cifar100", "ALIGN_CIFAR100_ROOT", "cifar-100-python.tar.gz"),
])
def test_a_missing_or_wrong_root_names_the_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                                  env: str, layout: str) -> None:
    monkeypatch.delenv(env, raising=False)
    fails(lambda: DATASETS.create(name), BadInputError, name, env, layout)
    fails(lambda: DATASETS.create(name, root=str(tmp_path / "nowhere")), BadInputError, "nowhere", layout)
    (tmp_path / "empty").mkdir()
    if name != "imagenet1k":  # an empty folder is an ImageNet root without class folders: the count says so
        fails(lambda: DATASETS.create(name, root=str(tmp_path / "empty")), BadInputError, "empty", layout)


def test_clip_benchmark_webdataset_retrieval(tmp_path: Path) -> None:
    """``dataset_type.txt`` = retrieval: each sample's ``.txt`` holds its captions, one per line."""
    import io
    import tarfile

    from layout_fixtures import png_bytes

    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "nshards.txt").write_text("1")
    (tmp_path / "dataset_type.txt").write_text("retrieval\n")
    with tarfile.open(tmp_path / "test" / "0.tar", "w") as tar:
        for key, text in (("a", "a red square\na crimson block\n"), ("b", "a blue square")):
            for ext, data in (("jpg", png_bytes(9)), ("txt", text.encode())):  # Pillow reads the bytes, not the suffix
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    test = DATASETS.create(f"wds:{tmp_path}").load("test")
    assert test.captions == [["a red square", "a crimson block"], ["a blue square"]] and test.labels is None


def test_webdataset_missing_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from align.errors import AlignError

    root = clip_benchmark_wds(tmp_path, [[("s000", 0)]], ["cat"], ["a {c}."])
    monkeypatch.setitem(sys.modules, "webdataset", None)  # import webdataset now raises ImportError
    fails(lambda: DATASETS.create(f"wds:{root}").load("test"), AlignError, "align[webdataset]")


def test_karpathy_images_option(tmp_path: Path) -> None:
    root = karpathy_flickr(tmp_path, "flickr30k", "my-images")
    fails(lambda: DATASETS.create("flickr30k", root=str(root)), BadInputError, "flickr30k-images")
    assert len(DATASETS.create("flickr30k", root=str(root), images="my-images").load("test")) == 3
