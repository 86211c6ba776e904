"""``configs/bench/encoder_matrix.yaml`` (issue 16): read and planned as ``align bench`` would, without running it."""

from __future__ import annotations

from pathlib import Path

from align.bench.plan.collisions import check_collisions
from align.bench.plan.config import load_config
from align.bench.plan.units import aligner_plans
from align.bench.runner import _check_sweeps

ROOT = Path(__file__).resolve().parents[2]


def test_encoder_matrix_covers_every_packaged_encoder_pair_and_feature_aligner(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # aligner entries name configs/aligners/*.yaml from the repository root
    config = load_config(ROOT / "configs" / "bench" / "encoder_matrix.yaml")
    assert config.image_encoders == ("torchvision:mobilenet_v2.imagenet1k_v1", "efficientnet_lite:lite0.imagenet")
    assert config.text_encoders == ("hf:sentence-transformers/all-MiniLM-L6-v2",
                                    "hf:sentence-transformers/all-mpnet-base-v2",
                                    "table:spacy:en_core_web_md", "table:gguf:gemma-3-270m.q4_k_m")
    assert [a.name for a in config.aligners] == ["ridge", "procrustes", "asif", "contrastive"]
    assert config.seeds == (0, 1, 2)
    assert [(d.name, d.fit, d.eval, d.tasks) for d in config.datasets] == [
        ("emoji", "anchors", "test", ("zeroshot_retrieval",)),
        ("fashion_mnist", "train@2000", "test@1000", ("zeroshot_classification",))]
    plans, text_encoders = aligner_plans(config)
    assert text_encoders == list(config.text_encoders)  # every aligner runs on features beside each text side
    _check_sweeps(config, plans)
    check_collisions(config, plans, text_encoders, save_aligners=True)
