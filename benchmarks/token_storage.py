"""Does storing token grids in float16 change any score? float32 against float16 MobileNetV2 tokens.

The feature cache keeps spatial token grids (7x7x1280 per image for MobileNetV2) in float16, half the
disk and memory of float32. This measures what that rounding changes, on unseen emoji:

- the tokens themselves: largest absolute difference, smallest cosine between matching tokens;
- ridge on mean-pooled tokens (closed form: any difference is the rounding's alone), R@1 both ways;
- Codebook-VLP trained on each (same seed, same schedule), R@1 both ways and subcategory zero-shot.

    python benchmarks/token_storage.py [--epochs 3] [--output results/token_storage.md]

float32 tokens are cached under their own key (modality ``image-tokens``), float16 ones under the
runner's (``image-tokens-float16``), so both are computed once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from _common import emit, machine_line, markdown_table  # benchmarks/_common.py

from align.bench.execute.features import FeatureBank, fit_captions
from align.eval.retrieval import evaluate_retrieval, flatten_captions
from align.eval.zeroshot import class_prompts, zeroshot_logits
from align.features.cache import FeatureKey, weights_fingerprint
from align.methods.codebook_vlp.aligner import CodebookVLPAligner
from align.methods.ridge import RidgeAligner
from align.registry import DATASETS, VISION_ENCODERS

IMAGE_ENCODER = "torchvision:mobilenet_v2.imagenet1k_v1"
TEXT_ENCODER = "hf:sentence-transformers/all-MiniLM-L6-v2"


def float32_tokens(bank: FeatureBank, split) -> torch.Tensor:  # noqa: ANN001
    """``[N, T, D]`` float32 tokens through the cache, under a key of their own."""
    from align.features.encoding import encode_pil_tokens

    encoder = bank._encoder("image", IMAGE_ENCODER)
    weights = weights_fingerprint(VISION_ENCODERS, IMAGE_ENCODER, encoder)
    preprocessing = json.dumps(dataclasses.asdict(encoder.data_config), sort_keys=True)
    key = FeatureKey(IMAGE_ENCODER, weights, preprocessing, split.dataset, split.version, split.split, "image-tokens")
    grid: list[int] = []

    def embed_batch(start: int, stop: int) -> torch.Tensor:
        tokens = encode_pil_tokens(encoder, [split.load_image(i) for i in range(start, stop)])
        grid[:] = tokens.shape[1:]
        return tokens.flatten(1)

    flat = bank.cache.compute(key, split.num_items, embed_batch, progress=False)
    return flat.view(len(flat), -1, encoder.embed_dim)


def scores(image: torch.Tensor, text: torch.Tensor, owner: torch.Tensor, zeroshot: torch.Tensor | None,
           labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    retrieval = evaluate_retrieval(image, text, owner, ks=(1,))
    out = {"I→T R@1": retrieval["text_retrieval_recall@1"], "T→I R@1": retrieval["image_retrieval_recall@1"]}
    if zeroshot is not None:
        logits = zeroshot_logits(image, zeroshot, num_classes=num_classes)
        out["subcategory acc1"] = float((logits.argmax(1) == labels).float().mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="Codebook-VLP epochs for each precision")
    parser.add_argument("--output", type=Path, default=Path("results/token_storage.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    bank = FeatureBank(progress=False)
    emoji = DATASETS.create("emoji")
    anchors, test = emoji.load("anchors"), emoji.load("test")
    tokens = {"float32": {s.split: float32_tokens(bank, s) for s in (anchors, test)},
              "float16": {s.split: bank.tokens(IMAGE_ENCODER, s).float() for s in (anchors, test)}}
    a32, a16 = tokens["float32"]["test"], tokens["float16"]["test"]
    cos = torch.nn.functional.cosine_similarity(a32.flatten(0, 1), a16.flatten(0, 1), dim=-1)
    nonzero = a32.flatten(0, 1).norm(dim=-1) > 0
    captions, _ = fit_captions(anchors)
    test_texts, owner = flatten_captions(test.captions)
    labels = test.extra_labels["subcategory"]
    prompts = class_prompts(labels.class_names, labels.templates)
    fit_text = bank.texts(TEXT_ENCODER, captions, anchors, "fit-captions")
    eval_text = bank.texts(TEXT_ENCODER, test_texts, test, "captions")
    label_tensor = torch.as_tensor(labels.labels)
    rows = []
    for precision, grid in tokens.items():
        ridge = RidgeAligner().fit(grid["anchors"].mean(1), fit_text)
        rows.append((f"ridge on mean-pooled tokens, {precision}",
                     scores(ridge.encode_image(grid["test"].mean(1)), ridge.encode_text(eval_text), owner, None,
                            label_tensor, len(labels.class_names))))
        torch.manual_seed(0)
        model = CodebookVLPAligner(max_epochs=args.epochs, seed=0).fit(grid["anchors"], captions)
        rows.append((f"Codebook-VLP ({args.epochs} epochs), {precision}",
                     scores(model.encode_image(grid["test"]), model.encode_text(test_texts), owner,
                            model.encode_text(prompts), label_tensor, len(labels.class_names))))
    names = list(rows[-1][1])
    biggest = max(abs(rows[i][1].get(n, 0.0) - rows[i + 2][1].get(n, 0.0)) for i in (0, 1) for n in names)
    lines = [
        f"Emoji test tokens ({tuple(a32.shape)}): largest |float32 - float16| = {float((a32 - a16).abs().max()):.2e}, "
        f"smallest cosine between matching non-zero tokens = {float(cos[nonzero].min()):.6f}.", "",
        *markdown_table(["model", *names], [[label, *(m.get(n) for n in names)] for label, m in rows], missing="–"),
        "", f"Largest score difference between the two precisions: {biggest:.3f}. Fit on the emoji anchors (955), "
        f"scored on the 956 unseen test emoji, seed 0; {time.perf_counter() - started:.0f} s.",
        machine_line()]
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
