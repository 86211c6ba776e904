"""Images on both sides of a user's copy (a planted duplicate in a fixture COCO, or one of the user's own
pairs that is a COCO test image): the run says so in one line, once, and keeps every image."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from layout_fixtures import cifar100_files, image, karpathy_coco, write_folder

import align.data.shared_images as shared
from align.bench.execute.features import FeatureBank
from align.bench.plan.config import load_config
from align.bench.runner import run_benchmark
from align.features.cache import FeatureCache
from align.registry import DATASETS

pytestmark = pytest.mark.usefixtures("isolated_home")

CONFIG = """
name: shared
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge]
datasets:
{entries}
"""
COCO = "  - {{name: coco, fit: train, eval: test, tasks: [{task}], options: {{root: \"{root}\"}}}}\n"
TRAIN = "train2014/COCO_train2014_000000000009.jpg"
TEST = "val2014/COCO_val2014_000000000133.jpg"


def run(tmp_path: Path, entries: str) -> tuple[list[str], list[dict]]:
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG.format(entries=entries))
    lines: list[str] = []
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    run_benchmark(load_config(path), tmp_path / "results", bank=bank, echo=lines.append)
    return lines, [json.loads(p.read_text()) for p in sorted((tmp_path / "results").rglob("*.json"))]


def planted(tmp_path: Path) -> Path:
    """A fixture COCO whose second test image is a byte-for-byte copy of the first train image."""
    root = karpathy_coco(tmp_path / "coco", extra_train=6)
    shutil.copyfile(root / TRAIN, root / TEST)
    return root


def test_a_planted_duplicate_is_named_and_kept(tmp_path: Path) -> None:
    root = planted(tmp_path)
    lines, records = run(tmp_path, COCO.format(task="zeroshot_retrieval", root=root))
    coco = DATASETS.create("coco", root=str(root))
    test_id, train_id = coco.load("test").item_ids[1], coco.load("train").item_ids[0]
    expected = (f"warning: 1 image(s) of coco/test are pixel-identical to images of coco/train (first: {test_id} = "
                f"{train_id}); kept, so the split stays the standard one: an aligner may have seen them while fitting")
    assert [line for line in lines if line.startswith("warning:")] == [expected]
    assert records and all(r["num_eval"] == 2 for r in records)  # nothing dropped
    lines, _ = run(tmp_path, COCO.format(task="zeroshot_retrieval", root=root))
    assert not any(line.startswith("warning:") for line in lines)  # nothing to compute: nothing hashed or said


def test_entries_on_the_same_splits_say_it_once(tmp_path: Path) -> None:
    """CIFAR-100's fine and coarse labels are two entries on one pair of splits: one line, not two."""
    files = cifar100_files()
    train, test = pickle.loads(files["train"]), pickle.loads(files["test"])
    test[b"data"][1] = train[b"data"][2]
    files["test"] = pickle.dumps(test)
    root = write_folder(tmp_path / "cifar", "cifar-100-python", files)
    entry = ("  - {{name: cifar100, fit: train, eval: test, tasks: [zeroshot_classification], {extra}"
             "options: {{root: \"{root}\"}}}}\n")
    lines, records = run(tmp_path, entry.format(extra="", root=root) + entry.format(extra="label_set: coarse, ", root=root))
    assert len(records) == 2
    expected = ("warning: 1 image(s) of cifar100/test are pixel-identical to images of cifar100/train (first: test/1 = "
                "train/2); kept, so the split stays the standard one: an aligner may have seen them while fitting")
    assert [line for line in lines if line.startswith("warning:")] == [expected]


def test_a_clean_copy_says_nothing(tmp_path: Path) -> None:
    lines, records = run(tmp_path, COCO.format(task="zeroshot_retrieval", root=karpathy_coco(tmp_path / "coco", 6)))
    assert records and not any(line.startswith("warning:") for line in lines)


def test_own_pairs_holding_a_coco_test_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fit on the user's manifest, score on COCO: one of their pairs is a COCO test image."""
    root = karpathy_coco(tmp_path / "coco")
    pairs = tmp_path / "pairs"
    rows = ["image,caption"]
    for i in range(6):
        image(pairs / f"p{i}.png", 40 + i)
        rows.append(f"p{i}.png,my picture {i}")
    shutil.copyfile(root / TEST, pairs / "copied.jpg")
    rows.append("copied.jpg,a copied picture")
    (pairs / "pairs.csv").write_text("\n".join(rows) + "\n")
    manifest = f"manifest:{pairs / 'pairs.csv'}"
    entry = f"  - {{name: \"{manifest}\", fit: all, eval: test, eval_dataset: coco, tasks: [zeroshot_retrieval]}}\n"
    monkeypatch.setenv("ALIGN_COCO_ROOT", str(root))  # an eval_dataset is built with its defaults
    lines, _ = run(tmp_path, entry)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and f"of coco/test are pixel-identical to images of {manifest}/all" in warnings[0]


def test_hashes_are_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = planted(tmp_path)
    coco = DATASETS.create("coco", root=str(root))
    fit, test = coco.load("train"), coco.load("test")
    first = shared.shared_images_line(fit, test)
    assert first is not None and shared.hashes_file(test).is_file()

    def no_decoding(split: object) -> list[str]:
        raise AssertionError("decoded again")

    monkeypatch.setattr(shared, "pixel_hashes", no_decoding)
    assert shared.shared_images_line(fit, test) == first  # read from the cache
    shared.hashes_file(test).write_text("[1, 2")  # damaged: ignored and written again
    monkeypatch.undo()
    assert shared.shared_images_line(fit, test) == first
    image(root / TEST, 99)  # new content: a new version, so new hashes
    assert shared.shared_images_line(fit, DATASETS.create("coco", root=str(root)).load("test")) is None


def test_packaged_datasets_are_not_hashed_by_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built-in splits are checked once by the integration tests; a run spends nothing on them."""
    import test_bench  # noqa: F401  (registers the test-colours dataset)

    def never(fit: object, test: object) -> str:
        raise AssertionError("hashed a packaged dataset")

    monkeypatch.setattr(shared, "shared_images_line", never)
    lines, records = run(tmp_path, "  - {name: test-colours, fit: train, eval: test, tasks: [zeroshot_retrieval]}\n")
    assert records and not any(line.startswith("warning:") for line in lines)
