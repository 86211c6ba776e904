"""What the LQAE studies (benchmarks/lqae_study.py, benchmarks/lqae_collapse.py) share: Gemma's table
and LM, and their images, pixels at 32 x 32 with their labels, Fashion-MNIST (its classes), emoji
(anchors to train on, test to score, about 100 subcategories as classes) or the procedural set's lone
shapes (their kind as the class)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

GEMMA = "gguf:gemma-3-270m.q4_k_m"  # the table whose rows are the codes, and its frozen LM
MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"  # the bidirectional arm's table and masked LM (BERT)
PROBE_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # the linear probe's C grid, chosen on a validation part
CHANNELS = {"fashion_mnist": 1, "emoji": 3, "shapes": 3}  # pixel channels each dataset is fed with (in_chans)
# the procedural set: one shape an image (shapes.single), so each attribute is a clean class; the study's
# probe reads SHAPES_LABEL, the in-context test any attribute (lqae_incontext.py's "shapes:colour")
SHAPES, SHAPES_LABEL = "shapes.single", "shape"


def load_data(args: argparse.Namespace) -> dict[str, Any]:
    """Pixels and labels of the train and test images, and the class names."""
    import align.data  # noqa: F401  (registers the datasets)
    from align.data.pixels import images_tensor
    from align.registry import DATASETS

    channels = CHANNELS[args.dataset]
    dataset = DATASETS.create(SHAPES if args.dataset == "shapes" else args.dataset)
    if args.dataset == "fashion_mnist":
        train, test = dataset.load(f"train@{args.train}"), dataset.load(f"test@{args.test}")
        labels_of = lambda split: split.labels  # noqa: E731
    elif args.dataset == "shapes":
        train, test = dataset.load(f"train@{args.train}"), dataset.load(f"test@{args.test}")
        labels_of = lambda split: split.extra_labels[SHAPES_LABEL]  # noqa: E731
    else:  # emoji: anchors to train on, test to score; subcategory labels (about 100 classes)
        train, test = dataset.load("anchors"), dataset.load("test")
        labels_of = lambda split: split.extra_labels["subcategory"]  # noqa: E731
        if args.train < len(train):
            train = dataset.load(f"anchors@{args.train}")
        if args.test < len(test):
            test = dataset.load(f"test@{args.test}")
    return {"train_x": images_tensor(train, 32, channels), "test_x": images_tensor(test, 32, channels),
            "train_y": np.asarray(labels_of(train).labels), "test_y": np.asarray(labels_of(test).labels),
            "class_names": list(labels_of(train).class_names), "channels": channels,
            "splits": (train.split, test.split)}
