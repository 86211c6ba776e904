"""Hyper-parameters: one declaration per aligner, checked in one place, with one-line errors.

Generic over the declarations (every bound, choice and type that a declaration states is enforced),
plus the exact wording of a few errors, since configs' users read them."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from align.errors import BadInputError
from align.methods.framework.hparams import HParams, param, specs
from align.registry import ALIGNERS

NAMES = ("ridge", "procrustes", "asif", "contrastive", "vlap", "lqae", "codebook_vlp")


def aligner_class(name: str) -> type:
    return type(ALIGNERS.create(name))


def refused(name: str, **hparams: Any) -> str:
    """The one-line message of the error constructing ``name`` with ``hparams`` gives."""
    with pytest.raises(BadInputError) as err:
        ALIGNERS.create(name, **hparams)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{name}: ")
    return message


@pytest.mark.parametrize("name", NAMES)
def test_hparams_are_the_resolved_declaration_as_a_plain_json_dict(name: str) -> None:
    aligner = ALIGNERS.create(name)
    cls = aligner_class(name)
    assert cls.config_class is not None and type(aligner.config) is cls.config_class
    assert type(aligner.hparams) is dict and list(aligner.hparams) == list(specs(cls.config_class))
    assert aligner.hparams == aligner.config.as_dict()
    assert json.loads(json.dumps(aligner.hparams)) == aligner.hparams
    assert cls(**aligner.hparams).hparams == aligner.hparams  # resolving is idempotent (saved fits reload)


@pytest.mark.parametrize("name", NAMES)
def test_constructors_take_no_named_hyper_parameters(name: str) -> None:
    """The declaration is the only list: no aligner repeats the names in its constructor's signature."""
    cls = aligner_class(name)
    for klass in cls.__mro__:
        if klass.__module__.startswith("align.") and "__init__" in vars(klass):
            params = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]
            assert [p.kind for p in params] == [inspect.Parameter.VAR_KEYWORD], klass


@pytest.mark.parametrize("name", NAMES)
def test_unknown_names_are_refused_by_name(name: str) -> None:
    assert "unknown hyper-parameter 'no_such_knob'" in refused(name, no_such_knob=1)
    first = next(iter(specs(aligner_class(name).config_class)))
    assert f"did you mean {first!r}" in refused(name, **{first + "x": 1})


def _outside(spec: Any) -> list[Any]:
    """Values just outside each stated bound and choice, and values of the wrong type."""
    rule, bad = spec.rule, [[1], object()]
    numeric = [k for k in spec.kinds if k in (int, float)]
    if numeric:
        bad += [True] + (["text"] if str not in spec.kinds else [])
        step = 1 if numeric == [int] else 1e-9
        if rule.low is not None:
            bad.append(rule.low - step)
        if rule.above is not None:
            bad.append(rule.above)
        if rule.below is not None:
            bad.append(rule.below)
    if str in spec.kinds:
        bad += ["no-such-choice"] if rule.choices else []
        bad += [] if numeric else [3]
    if bool in spec.kinds:
        bad += [1, "yes"]
    if not spec.optional:
        bad.append(None)
    return bad


CASES = [(name, spec.name, value) for name in NAMES for spec in specs(aligner_class(name).config_class).values()
         for value in _outside(spec)]


@pytest.mark.parametrize("name, key, value", CASES, ids=[f"{n}-{k}-{v!r}"[:60] for n, k, v in CASES])
def test_every_declared_rule_is_enforced_with_a_one_line_error(name: str, key: str, value: Any) -> None:
    assert refused(name, **{key: value}).startswith(f"{name}: {key} must be ")


@pytest.mark.parametrize("name, hparams, message", [
    ("contrastive", {"lr": 0}, "contrastive: lr must be a number > 0, got 0"),
    ("contrastive", {"batch_size": 1}, "contrastive: batch_size must be an integer in [2, 16777216] (InfoNCE needs "
                                       "negatives), got 1"),
    ("contrastive", {"heads": "left"}, "contrastive: heads must be one of image, both, text, got 'left'"),
    ("contrastive", {"patience": 3}, "contrastive: patience must be None when val_fraction is 0 (early stopping "
                                     "watches the validation loss), got 3"),
    ("lqae", {"mask_ratio": 1.0}, "lqae: mask_ratio must be a number in [0, 1), got 1.0"),
    ("lqae", {"in_chans": 2}, "lqae: in_chans must be 1 or 3, got 2"),
    ("lqae", {"image_size": 32, "patch_size": 5}, "lqae: patch_size must be a divisor of image_size=32, got 5"),
    ("ridge", {"alpha": "big"}, "ridge: alpha must be a number >= 0 or 'auto', got 'big'"),
    ("procrustes", {"dim": True}, "procrustes: dim must be an integer in [1, 16384] or None, got True"),
    ("vlap", {"w_cap": 0, "w_map": 0}, "vlap: w_cap and w_map are both 0; nothing would be trained"),
    ("vlap", {"prompt": "  "}, "vlap: prompt must be a non-empty string, got '  '"),
    ("asif", {"p": 1.5, "clamp_negative": False}, "asif: with clamp_negative=False, p must be an integer (got 1.5); "
                                                  "negative similarities have no fractional power"),
    ("codebook_vlp", {"weights": {"itx": 1.0}}, "codebook_vlp: weights must be a mapping from itc, itm, mlm, vq, "
                                                "mim to numbers >= 0, got {'itx': 1.0}"),
    ("contrastive", {"lrate": 0.1}, "contrastive: unknown hyper-parameter 'lrate'; did you mean 'lr'?"),
])
def test_error_wording(name: str, hparams: dict, message: str) -> None:
    assert refused(name, **hparams) == message


def test_values_are_stored_in_their_json_form() -> None:
    asif = ALIGNERS.create("asif", k=np.int64(5), p=8.0)
    assert asif.hparams["k"] == 5 and type(asif.hparams["k"]) is int
    assert asif.hparams["p"] == 8 and type(asif.hparams["p"]) is int  # as before: 8.0 and 8 are one setting
    contrastive = ALIGNERS.create("contrastive", checkpoint_dir=Path("runs") / "ckpt", lr=np.float32(0.5))
    assert contrastive.hparams["checkpoint_dir"] == str(Path("runs") / "ckpt")
    assert contrastive.hparams["lr"] == 0.5 and type(contrastive.hparams["lr"]) is float
    weights = {"itc": 2.0}
    codebook = ALIGNERS.create("codebook_vlp", weights=weights)
    codebook.hparams["weights"]["itc"] = 0.0  # a copy: the declaration (frozen) is not changed through it
    assert codebook.config.weights == {"itc": 2.0}


def test_a_declaration_with_an_unsupported_type_is_a_programming_error() -> None:
    @dataclasses.dataclass(frozen=True)
    class Bad(HParams):
        sizes: list = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="Bad.sizes"):
        Bad.resolve("bad", {})

    @dataclasses.dataclass(frozen=True)
    class Good(HParams):
        rate: float = param(0.5, low=0, below=1)
        name: str | None = None

    assert Good.resolve("good", {"rate": 0}).as_dict() == {"rate": 0, "name": None}
    with pytest.raises(BadInputError, match=r"^good: rate must be a number in \[0, 1\), got 1$"):
        Good.resolve("good", {"rate": 1})
