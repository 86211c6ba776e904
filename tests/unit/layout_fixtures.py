"""Tiny copies of the standard benchmark layouts, written file for file as the real ones are named."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def image(path: Path, value: int) -> Path:
    """An 8x8 RGB image of one colour (distinct per ``value``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), (value * 37 % 256, value * 91 % 256, value * 13 % 256), np.uint8)).save(path)
    return path


def karpathy_coco(root: Path, extra_train: int = 0) -> Path:
    """``dataset_coco.json`` with 2 train, 1 restval, 1 val, 2 test images under train2014/ and val2014/
    (and ``extra_train`` more train images, after them)."""
    extra = [("train2014", f"COCO_train2014_{100 + i:012d}.jpg", "train", [f"Picture number {i}."])
             for i in range(extra_train)]
    rows = [("train2014", "COCO_train2014_000000000009.jpg", "train", ["A plate of food. ", "Broccoli on a plate."]),
            ("train2014", "COCO_train2014_000000000025.jpg", "train", ["A giraffe eating leaves."]),
            ("val2014", "COCO_val2014_000000000042.jpg", "restval", ["A dog on a couch."]),
            ("val2014", "COCO_val2014_000000000073.jpg", "val", ["A motorcycle parked."]),
            ("val2014", "COCO_val2014_000000000074.jpg", "test", ["A dog lying down.", "A picture of a dog."]),
            ("val2014", "COCO_val2014_000000000133.jpg", "test", ["A child's bedroom."]), *extra]
    images, sentid = [], 0
    for imgid, (filepath, filename, split, raws) in enumerate(rows):
        image(root / filepath / filename, imgid)
        sentences = []
        for raw in raws:
            sentences.append({"tokens": raw.lower().strip(" .").split(), "raw": raw, "imgid": imgid, "sentid": sentid})
            sentid += 1
        images.append({"filepath": filepath, "sentids": [s["sentid"] for s in sentences], "filename": filename,
                       "imgid": imgid, "split": split, "sentences": sentences, "cocoid": int(filename[-10:-4])})
    (root / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    return root


def karpathy_flickr(root: Path, name: str, folder: str) -> Path:
    """``dataset_<name>.json`` with 2 train, 1 val and 3 test images under ``folder``/."""
    splits = ["train", "train", "val", "test", "test", "test"]
    images = []
    for imgid, split in enumerate(splits):
        filename = f"{1000 + imgid}.jpg"
        image(root / folder / filename, imgid)
        sentences = [{"tokens": ["a", "photo", str(imgid), str(k)], "raw": f"a photo {imgid} {k}", "imgid": imgid,
                      "sentid": 5 * imgid + k} for k in range(5)]
        images.append({"sentids": [s["sentid"] for s in sentences], "imgid": imgid, "sentences": sentences,
                       "split": split, "filename": filename})
    (root / f"dataset_{name}.json").write_text(json.dumps({"images": images, "dataset": name}))
    return root


def coco_official(root: Path, year: int) -> Path:
    """``annotations/captions_val<year>.json`` (3 images, one without captions) and ``val<year>/``."""
    images = [{"id": 397133, "file_name": f"{397133:012d}.jpg", "height": 8, "width": 8},
              {"id": 37777, "file_name": f"{37777:012d}.jpg", "height": 8, "width": 8},
              {"id": 252219, "file_name": f"{252219:012d}.jpg", "height": 8, "width": 8}]
    for i, entry in enumerate(images):
        image(root / f"val{year}" / entry["file_name"], i)
    annotations = [{"image_id": 37777, "id": 1, "caption": "A kitchen with a stove. "},
                   {"image_id": 397133, "id": 2, "caption": "A man cooking."},
                   {"image_id": 37777, "id": 3, "caption": "An empty kitchen."}]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / f"captions_val{year}.json").write_text(json.dumps(
        {"info": {}, "licenses": [], "images": images, "annotations": annotations}))
    return root


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _pixels(n: int, offset: int) -> np.ndarray:
    """``[n, 3072]`` uint8 rows: image i is red ``offset + i`` and blue 200 everywhere; green at row y,
    column x is ``(32 * y + x) % 256`` (the planes are stored row by row)."""
    planes = np.zeros((n, 3, 1024), np.uint8)
    planes[:, 0] = (offset + np.arange(n))[:, None]
    planes[:, 1], planes[:, 2] = np.arange(1024) % 256, 200
    return planes.reshape(n, 3072)


def cifar10_files(per_batch: int = 2, test: int = 3) -> dict[str, bytes]:
    """The files of ``cifar-10-batches-py/``: five train batches, a test batch, ``batches.meta``."""
    files = {}
    for b in range(1, 6):
        labels = [(b + i) % 10 for i in range(per_batch)]
        files[f"data_batch_{b}"] = pickle.dumps({
            b"batch_label": f"training batch {b} of 5".encode(), b"labels": labels,
            b"data": _pixels(per_batch, 10 * b), b"filenames": [f"img_{b}_{i}.png".encode() for i in range(per_batch)]})
    files["test_batch"] = pickle.dumps({b"batch_label": b"testing batch 1 of 1", b"labels": [3, 5, 3][:test],
                                        b"data": _pixels(test, 200), b"filenames": [b"t%d.png" % i for i in range(test)]})
    files["batches.meta"] = pickle.dumps({b"num_cases_per_batch": per_batch, b"num_vis": 3072,
                                          b"label_names": [n.encode() for n in CIFAR10_NAMES]})
    return files


def cifar100_files() -> dict[str, bytes]:
    """The files of ``cifar-100-python/``: ``train`` (4 images), ``test`` (2), ``meta``."""
    fine = [f"fine_{i}" for i in range(100)]
    fine[4] = "aquarium_fish"
    coarse = [f"coarse_{i}" for i in range(20)]

    def batch(n: int, fine_labels: list[int], coarse_labels: list[int], offset: int) -> bytes:
        return pickle.dumps({b"filenames": [b"f%d.png" % i for i in range(n)], b"batch_label": b"batch",
                             b"fine_labels": fine_labels, b"coarse_labels": coarse_labels, b"data": _pixels(n, offset)})

    return {"train": batch(4, [4, 4, 99, 0], [1, 1, 19, 4], 0), "test": batch(2, [99, 4], [19, 1], 50),
            "meta": pickle.dumps({b"fine_label_names": [n.encode() for n in fine],
                                  b"coarse_label_names": [n.encode() for n in coarse]})}


def write_folder(root: Path, folder: str, files: dict[str, bytes]) -> Path:
    (root / folder).mkdir(parents=True)
    for name, data in files.items():
        (root / folder / name).write_bytes(data)
    return root


def write_archive(path: Path, folder: str, files: dict[str, bytes]) -> Path:
    """A ``.tar.gz`` holding ``folder/<name>`` for each file, like the official download."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(folder)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def png_bytes(value: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def clip_benchmark_wds(root: Path, shards: list[list[tuple[str, int]]], classes: list[str],
                       templates: list[str]) -> Path:
    """CLIP_benchmark's layout: ``test/nshards.txt``, ``test/<i>.tar`` of ``<key>.png`` + ``<key>.cls``."""
    (root / "test").mkdir(parents=True)
    (root / "test" / "nshards.txt").write_text(f"{len(shards)}\n")
    (root / "classnames.txt").write_text("\n".join(classes) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("\n".join(templates) + "\n")
    value = 0
    for i, samples in enumerate(shards):
        with tarfile.open(root / "test" / f"{i}.tar", "w") as tar:
            for key, label in samples:
                value += 20
                for ext, data in (("png", png_bytes(value)), ("cls", f"{label}".encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return root
