"""Issue 27, the methods' part: nothing wrong is printed and nothing is lost.

- A saved fit without its checksums is never reused by the benchmark (it is fitted again, with one line
  saying why); an explicit ``load_aligner`` of such a file (an older align's) still loads, with a warning.
- Every integer hyper-parameter has an upper bound, and numbers too large for a float are refused: a
  one-line error at construction, never a MemoryError or OverflowError from deep inside a fit.
- A ``checkpoint_dir`` that is a file or cannot be written, a damaged ``last.ckpt`` and a saved fit's JSON
  nested too deeply are one-line errors naming the file; a damaged checkpoint is left as it was.
- Features that require grad are inputs: a fit detaches them (the same fit as without grad), and
  ``from_checkpoint`` of a file that is not a checkpoint of a fit is a one-line error naming it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from align.errors import AlignError, BadInputError
from align.methods.framework.base import check_features, check_tokens, load_aligner, saved_meta
from align.methods.framework.hparams import specs
from align.registry import ALIGNERS

NAMES = ("ridge", "procrustes", "asif", "contrastive", "vlap", "lqae", "codebook_vlp")
TOY_MASKED = "toy:table-masked"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def gaussian(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def one_line(caught: pytest.ExceptionInfo, *names: str) -> str:
    message = str(caught.value)
    assert isinstance(caught.value, AlignError)
    assert message and "\n" not in message, message
    for name in names:
        assert str(name) in message, (name, message)
    return message


# ---------------------------------------------------------------------------------------------- 1. unsealed fits

def fit_inputs(aligner: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return gaussian(16, 6, seed=0), gaussian(16, 5, seed=1)


def reuse(path: Path, echoed: list[str]) -> Any:
    from align.bench.execute.fitting import fit_or_reuse

    return fit_or_reuse(ALIGNERS.create("ridge", alpha=1.0), fit_inputs, path=path, reuse=True,
                        identity={"sha256": "f" * 64}, display="ridge", where="toy/fit", seed=0, echo=echoed.append)


def unseal_and_swap_tensors(path: Path) -> None:
    """What the tester did: the checksums deleted from the JSON, other tensors put beside it."""
    from safetensors.torch import load_file, save_file

    meta = json.loads(path.with_suffix(".json").read_text())
    del meta["checksum"], meta["safetensors_sha256"]
    path.with_suffix(".json").write_text(json.dumps(meta))
    state = load_file(str(path.with_suffix(".safetensors")))
    save_file({k: torch.full_like(v, 0.5) for k, v in state.items()}, str(path.with_suffix(".safetensors")))


def test_the_runner_does_not_count_an_unsealed_fit_as_saved(tmp_path: Path) -> None:
    from align.bench.execute.fitting import saved_state

    reuse(tmp_path / "fit", [])
    assert saved_state(tmp_path / "fit", "f" * 64) == ("ok", "")
    unseal_and_swap_tensors(tmp_path / "fit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused outright, not loaded with a warning
        state, why = saved_state(tmp_path / "fit", "f" * 64)
    assert state != "ok" and "without checksums" in why and "\n" not in why and "fit.json" in why


def test_an_unsealed_fit_is_fitted_again_not_reused(tmp_path: Path) -> None:
    fresh = reuse(tmp_path / "fit", [])
    unseal_and_swap_tensors(tmp_path / "fit")
    echoed: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = reuse(tmp_path / "fit", echoed)
    probe = gaussian(4, 6, seed=2)
    assert torch.equal(again.encode_image(probe), fresh.encode_image(probe))  # the genuine fit, not the 0.5s
    assert len(echoed) == 1 and "without checksums" in echoed[0] and echoed[0].endswith("fitting again")
    meta = json.loads((tmp_path / "fit.json").read_text())
    assert "checksum" in meta and "safetensors_sha256" in meta  # saved sealed again
    assert reuse(tmp_path / "fit", echoed) is not None and echoed[-1].startswith("reusing")


def test_an_explicitly_named_unsealed_file_loads_with_a_warning_but_not_as_verified(tmp_path: Path) -> None:
    reuse(tmp_path / "fit", [])
    unseal_and_swap_tensors(tmp_path / "fit")
    with pytest.warns(UserWarning, match="without checksums"):
        assert load_aligner(tmp_path / "fit").name == "ridge"
    for call in (saved_meta, load_aligner):
        with pytest.raises(BadInputError) as caught:
            call(tmp_path / "fit", require_checksums=True)
        one_line(caught, "fit.json", "without checksums")


# ---------------------------------------------------------------------------------------------- 2. upper bounds

def numeric(name: str) -> list[tuple[str, str, tuple[type, ...]]]:
    config = type(ALIGNERS.create(name)).config_class
    return [(name, key, spec.kinds) for key, spec in specs(config).items()
            if any(k in (int, float) for k in spec.kinds) and bool not in spec.kinds]


NUMERIC = [case for name in NAMES for case in numeric(name)]
INTEGERS = [(name, key) for name, key, kinds in NUMERIC if kinds == (int,)]


@pytest.mark.parametrize("name, key", INTEGERS, ids=[f"{n}-{k}" for n, k in INTEGERS])
def test_every_integer_hyper_parameter_has_an_upper_bound(name: str, key: str) -> None:
    rule = specs(type(ALIGNERS.create(name)).config_class)[key].rule
    assert rule.high is not None or rule.below is not None or rule.choices, f"{name}.{key} has no upper bound"


BOUNDED = [(name, key, spec.rule.high) for name in NAMES
           for key, spec in specs(type(ALIGNERS.create(name)).config_class).items() if spec.rule.high is not None]


@pytest.mark.parametrize("name, key, high", BOUNDED, ids=[f"{n}-{k}" for n, k, _ in BOUNDED])
def test_just_above_the_upper_bound_is_refused_in_words(name: str, key: str, high: float) -> None:
    above = high + 1 if float(high).is_integer() else high * 1.001
    with pytest.raises(BadInputError) as caught:
        ALIGNERS.create(name, **{key: above})
    message = one_line(caught)
    assert message.startswith(f"{name}: {key} must be ") and (f"{int(high)}]" in message or f"{high:g}]" in message)


@pytest.mark.parametrize("name, key", [(n, k) for n, k, _ in NUMERIC], ids=[f"{n}-{k}" for n, k, _ in NUMERIC])
def test_a_number_too_large_for_any_use_is_a_one_line_error(name: str, key: str) -> None:
    with pytest.raises(BadInputError) as caught:
        ALIGNERS.create(name, **{key: 10**400})
    assert one_line(caught).startswith(f"{name}: {key} must be ")


def fits_tiny(name: str, **hparams: Any) -> Any:
    """``name`` built with ``hparams``, fitted and used on tiny data (where a bad value would surface)."""
    x, y = gaussian(12, 6, seed=0), gaussian(12, 5, seed=1)
    aligner = ALIGNERS.create(name, **hparams).fit(x, y)
    return aligner.encode_image(x)


@pytest.mark.parametrize("name, hparams, key", [
    ("asif", {"p": 1e300}, "p"),
    ("asif", {"p": 10**400}, "p"),
    ("asif", {"memory_mb": 10**400}, "memory_mb"),
    ("asif", {"search": "faiss-hnsw", "hnsw_m": 10**12, "k": 3}, "hnsw_m"),
    ("asif", {"search": "faiss-hnsw", "ef_search": 10**12, "k": 3}, "ef_search"),
    ("asif", {"search": "faiss-ivf", "nlist": 10**12, "k": 3}, "nlist"),
    ("contrastive", {"heads": "both", "dim": 10**12, "max_epochs": 1}, "dim"),
    ("contrastive", {"max_epochs": 1, "seed": 2**32}, "seed"),
    ("contrastive", {"max_epochs": 1, "seed": -1}, "seed"),
    ("contrastive", {"max_epochs": 1, "devices": 10**30}, "devices"),
    ("ridge", {"alpha": 10**400}, "alpha"),
], ids=lambda v: str(v)[:40])
def test_huge_values_the_tester_tried_are_refused_before_any_work(name: str, hparams: dict, key: str) -> None:
    if hparams.get("search", "").startswith("faiss"):
        pytest.importorskip("faiss")
    with pytest.raises(BadInputError) as caught:
        fits_tiny(name, **hparams)
    assert one_line(caught).startswith(f"{name}: {key} must be ")


def test_asif_functions_refuse_a_huge_p() -> None:
    from align.methods.asif.aligner import relative_represent

    with pytest.raises(BadInputError) as caught:
        relative_represent(gaussian(3, 4, seed=0), gaussian(5, 4, seed=1), k=2, p=10**400)
    one_line(caught, "p")


def test_a_huge_objective_weight_is_a_one_line_error() -> None:
    with pytest.raises(BadInputError) as caught:
        ALIGNERS.create("codebook_vlp", weights={"itc": 10**400})
    one_line(caught, "weights")


# ---------------------------------------------------------------------------------------------- 3. files

def contrastive(**extra: Any) -> Any:
    return ALIGNERS.create("contrastive", **{"heads": "both", "dim": 4, "lr": 1e-2, "batch_size": 8, "max_epochs": 1,
                                             **extra})


PAIRS = (gaussian(16, 6, seed=0), gaussian(16, 5, seed=1))


def test_checkpoint_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine")
    for where in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(BadInputError) as caught:
            contrastive(checkpoint_dir=where).fit(*PAIRS)
        one_line(caught, "checkpoint_dir", tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into any folder")
def test_checkpoint_dir_that_cannot_be_written(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for where in (locked, locked / "sub"):
            with pytest.raises(BadInputError) as caught:
                contrastive(checkpoint_dir=where).fit(*PAIRS)
            one_line(caught, "checkpoint_dir", locked)
    finally:
        locked.chmod(0o700)


def reshaped_weights(checkpoint: dict) -> dict:
    return {**checkpoint, "state_dict": {k: torch.zeros(2, 2) for k in checkpoint["state_dict"]}}


def without(key: str) -> Callable[[dict], dict]:
    return lambda checkpoint: {k: v for k, v in checkpoint.items() if k != key}


DAMAGED_CHECKPOINTS: dict[str, Callable[[bytes, Path], None]] = {
    "truncated": lambda good, p: p.write_bytes(good[: len(good) // 2]),
    "random bytes": lambda good, p: p.write_bytes(os.urandom(4096)),
    "empty": lambda good, p: p.write_bytes(b""),
    "a tensor": lambda good, p: torch.save(torch.zeros(3), p),
    "a list": lambda good, p: torch.save([1, 2], p),
    "a dict of something else": lambda good, p: torch.save({"weights": torch.zeros(2)}, p),
    "callbacks of the wrong type": lambda good, p: torch.save({**torch.load(p, weights_only=True), "callbacks": [1]}, p),
    "weights of other shapes": lambda good, p: torch.save(reshaped_weights(torch.load(p, weights_only=True)), p),
    "no optimiser state": lambda good, p: torch.save(without("optimizer_states")(torch.load(p, weights_only=True)), p),
    "no weights": lambda good, p: torch.save(without("state_dict")(torch.load(p, weights_only=True)), p),
}


@pytest.mark.parametrize("case", list(DAMAGED_CHECKPOINTS))
@pytest.mark.parametrize("how", ["checkpoint_dir", "ckpt_path"])
def test_a_damaged_last_ckpt_is_named_and_kept(tmp_path: Path, case: str, how: str) -> None:
    contrastive(checkpoint_dir=tmp_path).fit(*PAIRS)
    last = tmp_path / "last.ckpt"
    DAMAGED_CHECKPOINTS[case](last.read_bytes(), last)
    damaged = last.read_bytes()
    with pytest.raises(BadInputError) as caught:
        if how == "checkpoint_dir":
            contrastive(checkpoint_dir=tmp_path, max_epochs=2).fit(*PAIRS)
        else:
            contrastive(max_epochs=2).fit(*PAIRS, ckpt_path=last)
    message = one_line(caught, last)
    assert "another fit" not in message, message  # damaged, not a checkpoint of other settings
    assert last.read_bytes() == damaged  # the user's file is not overwritten or deleted


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("where", ["top level", "hyper-parameter"])
def test_a_saved_fit_with_json_nested_too_deeply(tmp_path: Path, where: str) -> None:
    from align.bench.execute.fitting import saved_state

    ALIGNERS.create("ridge").fit(*PAIRS).save(tmp_path / "fit")
    text = nested(100_000) if where == "top level" else \
        '{"aligner": "ridge", "hparams": {"alpha": ' + nested(100_000) + '}, "image_dim": 6, "text_dim": 5}'
    (tmp_path / "fit.json").write_text(text)
    with pytest.raises(BadInputError) as caught:
        load_aligner(tmp_path / "fit")
    one_line(caught, "fit.json", "nested")
    state, why = saved_state(tmp_path / "fit", "f" * 64)
    assert state == "damaged" and "fit.json" in why


# ---------------------------------------------------------------------------------------------- 4. API

GRAD_CASES = {"ridge": {}, "ridge auto": {"alpha": "auto"}, "procrustes": {}, "asif": {"k": 4},
              "contrastive": {"heads": "both", "dim": 4, "batch_size": 8, "max_epochs": 2}}


@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_fit_on_features_that_require_grad_is_the_plain_fit(case: str) -> None:
    name = case.split()[0]
    x, y = PAIRS
    plain = ALIGNERS.create(name, **GRAD_CASES[case]).fit(x, y)
    xg, yg = x.clone().requires_grad_(), y.clone().requires_grad_()
    graded = ALIGNERS.create(name, **GRAD_CASES[case]).fit(xg, yg)
    plain_state, graded_state = plain.state_dict(), graded.state_dict()
    assert plain_state.keys() == graded_state.keys()
    for key in plain_state:
        assert not graded_state[key].requires_grad, key
        assert torch.equal(plain_state[key], graded_state[key]), key
    out = graded.encode_image(xg)
    assert not out.requires_grad and torch.equal(out, plain.encode_image(x))
    assert xg.grad is None and yg.grad is None


def test_lqae_fit_on_pixels_that_require_grad_is_the_plain_fit() -> None:
    hparams = dict(table=TOY_MASKED, image_size=8, patch_size=4, encoder_width=16, encoder_depth=1, encoder_heads=2,
                   decoder_width=16, decoder_depth=1, decoder_heads=2, batch_size=8, max_epochs=1)
    images = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = ALIGNERS.create("lqae", **hparams).fit_images(images)
    graded_images = images.clone().requires_grad_()
    graded = ALIGNERS.create("lqae", **hparams).fit_images(graded_images)
    for key, tensor in plain.state_dict().items():
        assert torch.equal(tensor, graded.state_dict()[key]), key
    assert graded_images.grad is None


def test_checked_inputs_never_carry_a_graph() -> None:
    assert not check_features(torch.ones(2, 3, requires_grad=True), "f").requires_grad
    assert not check_tokens(torch.ones(2, 4, 3, requires_grad=True), "t").requires_grad


NOT_CHECKPOINTS: dict[str, Callable[[Path], None]] = {
    "random bytes": lambda p: p.write_bytes(os.urandom(4096)),
    "empty": lambda p: p.write_bytes(b""),
    "a tensor": lambda p: torch.save(torch.zeros(3), p),
    "a list": lambda p: torch.save([1, 2], p),
    "a dict of weights": lambda p: torch.save({"weight": torch.zeros(2)}, p),
    "hyper_parameters of the wrong kind": lambda p: torch.save({"hyper_parameters": [1], "state_dict": {}}, p),
    "missing": lambda p: None,
    "a folder": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("case", list(NOT_CHECKPOINTS))
def test_from_checkpoint_of_a_file_that_is_not_a_lightning_checkpoint(tmp_path: Path, case: str) -> None:
    from align.methods.contrastive import ContrastiveAligner

    path = tmp_path / "model.ckpt"
    NOT_CHECKPOINTS[case](path)
    with pytest.raises(BadInputError) as caught:
        ContrastiveAligner.from_checkpoint(path)
    one_line(caught, path)


def test_from_checkpoint_with_weights_of_other_shapes(tmp_path: Path) -> None:
    from align.methods.contrastive import ContrastiveAligner

    contrastive(checkpoint_dir=tmp_path).fit(*PAIRS)
    last = tmp_path / "last.ckpt"
    torch.save(reshaped_weights(torch.load(last, weights_only=True)), last)
    with pytest.raises(BadInputError) as caught:
        ContrastiveAligner.from_checkpoint(last)
    one_line(caught, last)


def test_from_checkpoint_of_a_good_checkpoint_still_works(tmp_path: Path) -> None:
    from align.methods.contrastive import ContrastiveAligner

    fitted = contrastive(checkpoint_dir=tmp_path).fit(*PAIRS)
    loaded = ContrastiveAligner.from_checkpoint(tmp_path / "last.ckpt")
    assert torch.equal(loaded.encode_image(PAIRS[0]), fitted.encode_image(PAIRS[0]))
