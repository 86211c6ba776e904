"""``align pairs``: encoder pairs ranked by alignment metrics on a fit split, through the feature cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from align.bench.encoder_ranking import PairScores, PairTable, markdown, ranks, score_pairs
from align.bench.execute.features import FeatureBank, fit_captions
from align.cli import main
from align.data.base import Dataset, DatasetSplit
from align.eval.alignment_metrics import alignment_scores
from align.registry import DATASETS

SHADES = ["dark red", "bright red", "dark green", "bright green", "dark blue", "bright blue"]


class Shades(Dataset):
    """Colour squares whose captions name the shade: 18 pairs in ``fit``, enough for k up to 17."""

    name, version, splits = "test-pairs-shades", "1", ("fit",)

    def load(self, split: str) -> DatasetSplit:
        rng = np.random.default_rng(0)
        base = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
        colours = [np.array(base[s.split()[1]]) * (0.5 if s.startswith("dark") else 1.0) for s in SHADES]
        items = [i % len(SHADES) for i in range(18)]
        images = [Image.fromarray(np.clip(colours[c] + rng.normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8))
                  for c in items]
        return DatasetSplit(dataset=self.name, split=split, version=self.version, num_items=len(items),
                            load_image=lambda i: images[i], captions=[[f"a {SHADES[c]} square"] for c in items])


if "test-pairs-shades" not in DATASETS:
    DATASETS.add("test-pairs-shades", Shades)

ARGS = ["pairs", "--dataset", "test-pairs-shades", "--split", "fit", "--image-encoders", "toy:cnn,toy:vit",
        "--text-encoders", "toy:text", "--k", "4", "--quiet"]


def test_pairs_prints_and_writes_the_table_of_cached_features(isolated_home: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "out" / "pairs.md"
    assert main([*ARGS, "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert output.read_text() == printed
    lines = printed.splitlines()
    assert lines[0].startswith("Alignment before fitting on test-pairs-shades/fit (18 pairs: first caption")
    assert lines[2] == "| pair | mutual_knn | cknna | cka | cka_debiased |"
    rows = [line for line in lines if line.startswith("| toy:")]
    assert len(rows) == 2 and {r.split(" | ")[0] for r in rows} == {"| toy:cnn + toy:text", "| toy:vit + toy:text"}

    # the numbers are the metrics of the features the runner would fit on (same cache keys)
    bank = FeatureBank(progress=False)
    split = Shades().load("fit")
    texts = bank.texts("toy:text", fit_captions(split)[0], split, "fit-captions")
    expected = alignment_scores(bank.images("toy:cnn", split), texts, k=4)
    cnn_row = next(r for r in rows if r.startswith("| toy:cnn"))
    assert [cell.split(" (")[0] for cell in cnn_row.strip("| ").split(" | ")[1:]] == [
        f"{expected[m]:.3f}" for m in ("mutual_knn", "cknna", "cka", "cka_debiased")]
    assert not list(output.parent.glob(".*.part"))  # written atomically: no temporary left behind


def test_rows_are_sorted_by_the_chosen_metric_and_ranked_per_column() -> None:
    rows = (PairScores("i1", "t", {"mutual_knn": 0.2, "cknna": 0.9, "cka": 0.5, "cka_debiased": float("nan")}),
            PairScores("i2", "t", {"mutual_knn": 0.4, "cknna": 0.1, "cka": 0.5, "cka_debiased": 0.3}))
    assert ranks(rows, "mutual_knn") == [2, 1] and ranks(rows, "cka") == [1, 1] and ranks(rows, "cka_debiased") == [2, 1]
    table = PairTable("d", "s", 3, 10, "first caption of each image", rows)
    by_knn = [line.split(" | ")[0] for line in markdown(table).splitlines() if line.startswith("| i")]
    by_cknna = [line.split(" | ")[0] for line in markdown(table, sort="cknna").splitlines() if line.startswith("| i")]
    assert by_knn == ["| i2 + t", "| i1 + t"] and by_cknna == ["| i1 + t", "| i2 + t"]
    assert "| i1 + t | 0.200 (2) | 0.900 (1) | 0.500 (1) | nan (2) |" in markdown(table)



class ZeroRowBank(FeatureBank):
    """Seeded features; ``toy:text`` gives captions 3 and 7 all-zero vectors (a caption with no word in a
    word-vector table: spaCy's md vectors do this to one emoji name of the anchor half)."""

    def images(self, encoder: str, split: DatasetSplit) -> torch.Tensor:
        return torch.randn(split.num_items, 6, generator=torch.Generator().manual_seed(len(encoder)))

    def texts(self, encoder: str, texts, split: DatasetSplit, what: str) -> torch.Tensor:  # noqa: ANN001
        features = torch.randn(len(texts), 5, generator=torch.Generator().manual_seed(1))
        if encoder == "toy:text":
            features[[3, 7]] = 0.0
        return features


def test_pairs_with_all_zero_features_are_left_out_of_every_pair_alike() -> None:
    bank = ZeroRowBank(progress=False)
    lines: list[str] = []
    table = score_pairs("test-pairs-shades", "fit", ["toy:cnn", "toy:vit"], ["toy:text", "table:toy"], k=4,
                        bank=bank, echo=lines.append)
    assert table.num_pairs == 16 and table.left_out == (("toy:text", 2),)
    assert lines[0] == "2 of 18 fit pairs left out (all-zero features): toy:text 2"
    split = Shades().load("fit")
    keep = torch.ones(18, dtype=torch.bool)
    keep[[3, 7]] = False
    for row in table.rows:  # the other text side is scored on the same 16 pairs, not all 18
        expected = alignment_scores(bank.images(row.image_encoder, split)[keep],
                                    bank.texts(row.text_encoder, ["x"] * 18, split, "fit-captions")[keep], k=4)
        assert row.scores == pytest.approx(expected, nan_ok=True)
    assert markdown(table).splitlines()[0].startswith(
        "Alignment before fitting on test-pairs-shades/fit (16 pairs: first caption of each image; left out of "
        "every pair: the fit pairs with all-zero features under toy:text (2)); k = 4")


@pytest.mark.parametrize(("change", "message"), [
    (["--k", "18"], "--k 18: test-pairs-shades/fit has 18 pairs; k must be from 1 to 17"),
    (["--image-encoders", "toy:nope"], "toy:nope"),
    (["--dataset", "no-such-dataset"], "no-such-dataset"),
])
def test_bad_arguments_are_one_line_errors(isolated_home: Path, capsys, change: list[str], message: str) -> None:
    args = list(ARGS)
    flag = args.index(change[0])
    args[flag + 1] = change[1]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("align: error: ") and "\n" not in err and message in err, err
