"""Aligners saved by an earlier version (commit 9251d8e, before the one-subpackage-per-method layout
and the shared trained-aligner base) still load, with the same hyper-parameters and outputs.

The fixtures were written by ``tests/fixtures/legacy_aligners/make_fixtures.py`` run against that
commit: one tiny fitted aligner of each of the seven kinds, the outputs it gave on fixed probes, and
that version's default hyper-parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from align.methods.framework.base import load_aligner
from align.registry import ALIGNERS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_aligners"
NAMES = ("ridge", "procrustes", "asif", "contrastive", "vlap", "lqae", "codebook_vlp")
# hyper-parameters added since that version (with defaults that keep its behaviour)
ADDED = {"lqae": {"checkpoint_dir": None, "codebook_rows": "all", "codebook_size": None, "tokens_per_image": None,
                 "augment": False, "crop_min_scale": 0.2, "usage_weight": 0.0, "usage_temperature": 0.01,
                 "val_fraction": 0.0},
         "codebook_vlp": {"checkpoint_dir": None, "restart_window": 0, "code_source": "states", "codebook_init": "batch",
                          "reconstruction": 0.0, "mim_input": "fusion", "mim_weighting": "none",
                          "hard_negative_temperature": False, "rerank_k": 0},
         "vlap": {"vocab": "frequent", "ot_columns": "batch", "warmup_fraction": 0.0, "schedule": "constant",
                  "init_scale": 1.0, "val_fraction": 0.0, "patience": None, "prefix_source": "pooled",
                  "lm_precision": "float32", "val_lm_items": 0, "monitor": "val_loss"}}
# Lightning run options every trained aligner gained (issue 18); at these defaults they leave identities alone
RUN_OPTIONS = {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"}
ADDED = {name: RUN_OPTIONS | ADDED.get(name, {}) for name in ("contrastive", "vlap", "lqae", "codebook_vlp")}
# hyper-parameters renamed since (old name -> new name; Aligner.renamed_hparams moves a saved value)
RENAMED = {"lqae": {"bert_weight": "lm_weight"}}
# defaults changed by a redesign of the method, its version bumped (LQAE 2, issue 14: the LM weight matters,
# the VQ-VAE has the paper's 1024 codes; Codebook-VLP 2, issue 15: codes that stay used, MIM on the
# evaluated path); a saved fit keeps its values (legacy_hparams fills the added ones, as in ADDED)
CHANGED = {"lqae": {"lm_weight": 1.0, "codebook_size": 1024},
           "codebook_vlp": {"restart_window": 10, "code_source": "tokens", "codebook_init": "kmeans",
                            "mim_input": "encoder", "mim_weighting": "inverse_frequency",
                            "hard_negative_temperature": True, "image_layers": 2, "max_epochs": 10}}
# defaults re-chosen on validation parts since (docs/defaults.md, "How the defaults were chosen"); a saved fit
# keeps the values it was fitted with, so loading it is unaffected
RECHOSEN = {"contrastive": {"lr": 3e-3, "weight_decay": 0.01, "max_epochs": 10},
            "vlap": {"prior": "captions", "vocab": "captions", "vocab_subset": 2000, "ot_columns": "all", "lr": 3e-3,
                     "warmup_fraction": 0.1, "schedule": "cosine", "w_map": 10.0},
            # the five-arm study's validation (issue 32; tests/unit/test_bench_configs_match_studies.py)
            "codebook_vlp": {"max_epochs": 24}}


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "expected.safetensors"))


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((FIXTURES / "expected.json").read_text())


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def renamed(name: str, hparams: dict) -> dict:
    return {RENAMED.get(name, {}).get(k, k): v for k, v in hparams.items()}


def close(actual: torch.Tensor, wanted: torch.Tensor) -> bool:
    """Equal up to float32 rounding: the outputs were computed once, on one machine; another CPU's BLAS
    kernels may order the same sums differently (a last-bit difference, never a changed model)."""
    return actual.shape == wanted.shape and torch.allclose(actual, wanted, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_saved_aligner_loads_and_reproduces_its_outputs(name: str, expected: dict, meta: dict) -> None:
    from safetensors.torch import load_file

    saved = json.loads((FIXTURES / f"{name}.json").read_text())
    with pytest.warns(UserWarning, match="saved without checksums"):  # nothing to verify them against
        aligner = load_aligner(FIXTURES / name)
    assert aligner.name == name and type(aligner) is type(ALIGNERS.create(name))
    assert aligner.hparams == renamed(name, saved["hparams"]) | ADDED.get(name, {})
    assert (aligner.image_dim, aligner.text_dim) == (saved["image_dim"], saved["text_dim"])
    state = load_file(str(FIXTURES / f"{name}.safetensors"))
    reloaded = aligner.state_dict()
    assert reloaded.keys() == state.keys() and all(torch.equal(reloaded[k], v) for k, v in state.items())
    assert close(aligner.encode_image(expected[f"{name}.image_input"]), expected[f"{name}.image"])
    if f"{name}.text_input" in expected:
        assert close(aligner.encode_text(expected[f"{name}.text_input"]), expected[f"{name}.text"])
    elif name in meta["caption_inputs"]:
        encode = getattr(aligner, "encode_text_strings", aligner.encode_text)
        assert close(encode(meta["caption_inputs"][name]), expected[f"{name}.text"])


@pytest.mark.parametrize("name", NAMES)
def test_default_hyper_parameters_are_those_of_the_earlier_version(name: str, meta: dict) -> None:
    """Saved results and configs name hyper-parameters: none dropped, none renamed but those in ``RENAMED``
    (saved fits load through ``renamed_hparams``), and no default changed except those re-chosen on
    validation (``RECHOSEN``) or changed with a version bump (``CHANGED``)."""
    expected = renamed(name, meta["defaults"][name]) | ADDED.get(name, {})
    assert ALIGNERS.create(name).hparams == expected | CHANGED.get(name, {}) | RECHOSEN.get(name, {})
