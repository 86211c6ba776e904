"""A toy dataset and a toy benchmark run for the curves and HTML report tests (tiny models, no assets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from align.bench.plan.config import load_config
from align.bench.execute.features import FeatureBank
from align.bench.runner import run_benchmark
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.features.cache import FeatureCache
from align.registry import DATASETS

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20)}


class ReportColours(Dataset):
    """Colour squares whose captions name the colour (24 per split)."""

    name, version, splits = "report-colours", "1", ("train", "test")

    def load(self, split: str) -> DatasetSplit:
        rng = np.random.default_rng(0 if split == "train" else 1)
        names = list(COLOURS)
        labels = np.array([i % len(names) for i in range(24)], dtype=np.int64)
        images = [Image.fromarray(np.clip(np.array(COLOURS[names[c]], dtype=np.float64)
                                          + rng.normal(0, 10, (32, 32, 3)), 0, 255).astype(np.uint8)) for c in labels]
        return DatasetSplit(dataset=self.name, split=split, version=self.version, num_items=len(labels),
                            load_image=lambda i: images[i], captions=[[f"a {names[c]} square", names[c]] for c in labels],
                            labels=LabelSet(labels, names, ("a {c} square.", "{c}")))


if "report-colours" not in DATASETS:
    DATASETS.add("report-colours", ReportColours)

CONFIG = """
name: report-toy
seeds: [0]
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners:
  - ridge
  - {name: asif, hparams: {k: 4, p: 2}}
  - {name: contrastive, hparams: {max_epochs: 3, batch_size: 8, val_fraction: 0.25}}
datasets:
  - {name: report-colours, fit: train, eval: test, tasks: [zeroshot_classification, zeroshot_retrieval]}
"""

LQAE = """  - {name: lqae, hparams: {table: "toy:table-masked", image_size: 16, patch_size: 4, in_chans: 3, encoder_width: 32,
                           encoder_depth: 1, encoder_heads: 2, decoder_width: 32, decoder_depth: 1, decoder_heads: 2,
                           batch_size: 8, max_epochs: 2}}
"""


def toy_run(tmp_path: Path, *, save_aligners: bool = True, lqae: bool = False) -> Path:
    """Run the toy benchmark into ``tmp_path/results`` and return that folder."""
    text = CONFIG
    if lqae:  # LQAE has no text side: it is fitted for the linear probe only
        text = text.replace("datasets:", LQAE + "datasets:").replace("zeroshot_retrieval]", "zeroshot_retrieval, fewshot]")
    config_path = tmp_path / "bench.yaml"
    config_path.write_text(text)
    results = tmp_path / "results"
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    run_benchmark(load_config(config_path), results, bank=bank, echo=lambda _: None, save_aligners=save_aligners)
    return results
