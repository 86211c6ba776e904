"""Frozen-encoder leaderboard: linear-probe accuracy and throughput of every real vision encoder.

The reference row, measured in the same run, is a logistic regression on raw pixels, so accuracies
read as "what the pretrained features add"; throughput is images/s (preprocessing included) and its
ratio against the first encoder of the run. Data: scikit-learn's 8x8 digits (1797 images, shipped with scikit-learn), upsampled
by each encoder's own preprocessing; a fixed stratified 50/50 split (seed 0); the regularisation C
is chosen by 5-fold cross-validation on the training half only.

    python benchmarks/encoders.py [--encoders NAME ...] [--output results/encoders.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from _common import emit, machine_line, markdown_table  # benchmarks/_common.py
from align.features.encoding import encode_pil
from align.registry import VISION_ENCODERS

DEFAULT_ENCODERS = ["torchvision:mobilenet_v2.imagenet1k_v1", "efficientnet_lite:lite0.imagenet"]


def digits_as_images() -> tuple[list[Image.Image], np.ndarray]:
    digits = load_digits()
    images = [Image.fromarray((255 - img * 255 / 16).astype(np.uint8)).convert("RGB") for img in digits.images]
    return images, digits.target


def split(features: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """The fixed stratified 50/50 split (seed 0): train_x, test_x, train_y, test_y."""
    return train_test_split(features, labels, test_size=0.5, stratify=labels, random_state=0)


def probe_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    train_x, test_x, train_y, test_y = split(features, labels)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        {"logisticregression__C": [0.01, 0.1, 1.0, 10.0]}, cv=5)
    search.fit(train_x, train_y)
    return float(search.score(test_x, test_y))


def embed(name: str, images: list[Image.Image], batch_size: int = 64) -> tuple[np.ndarray, float]:
    encoder = VISION_ENCODERS.create(name)
    start = time.perf_counter()
    chunks = [encode_pil(encoder, images[i:i + batch_size])[0] for i in range(0, len(images), batch_size)]
    seconds = time.perf_counter() - start
    return torch.cat(chunks).numpy(), len(images) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=DEFAULT_ENCODERS)
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()
    torch.manual_seed(0)

    images, labels = digits_as_images()
    raw = np.stack([np.asarray(img.convert("L"), dtype=np.float32).ravel() for img in images])
    rows = [("raw pixels (reference)", raw.shape[1], probe_accuracy(raw, labels), None)]
    for name in args.encoders:
        features, rate = embed(name, images)
        rows.append((name, features.shape[1], probe_accuracy(features, labels), rate))

    first_rate = next((r[3] for r in rows if r[3]), None)
    n_train, n_test = (len(part) for part in split(raw, labels)[2:])
    cells = [(name, dim, acc, rate, rate / first_rate if rate and first_rate else None)
             for name, dim, acc, rate in rows]
    lines = [
        f"Linear probe on sklearn digits ({n_train} train / {n_test} test, seed 0)",
        "",
        *markdown_table(("features", "dim", "probe acc1", "images/s", "speed vs first encoder"), cells,
                        formats=("", "d", ".3f", ".1f", "{:.2f}x"), missing="-"),
        "",
        machine_line(packages=("torch", "numpy", "scikit-learn")),
    ]
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
