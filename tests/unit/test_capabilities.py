"""What an aligner can do is declared on its class, checked when it is registered, and read as a flag.

The older probes (``callable(getattr(aligner, "caption", None))``, ``getattr(aligner, "text_input",
"features")``, ...) must keep giving the same answers as the flags while callers move over."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from align.errors import AlignError
from align.methods.framework.base import Aligner
from align.methods.framework.capabilities import CAPABILITIES, MissingCapability
from align.registry import ALIGNERS, DeclarationError, Registry, _aligner_declarations

NAMES = ("ridge", "procrustes", "asif", "contrastive", "vlap", "lqae", "codebook_vlp")
# what each built-in declares (every flag not listed is False)
DECLARED = {"asif": {"represents_by_anchors"}, "vlap": {"can_caption", "finds_nearest_words"},
            "lqae": {"quantizes_images", "writes_token_strings"},
            "codebook_vlp": {"quantizes_images", "gives_code_indices", "reranks_retrieval"}}
TEXT_INPUT = {"vlap": "strings", "codebook_vlp": "strings", "lqae": "none"}


class Plain(Aligner):
    """The smallest aligner: no capability beyond fit and encode."""

    name = "test-plain"

    def fit(self, image_features: torch.Tensor, text_features: torch.Tensor) -> Plain:
        return self

    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        return image_features

    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        return text_features


class Captioner(Plain):
    name = "test-captioner"
    can_caption = True

    def caption(self, images: Any) -> list[str]:
        return ["a picture"] * len(images)


class ClaimsToCaption(Plain):
    name = "test-claims"
    can_caption = True  # but no caption()


class CaptionsSilently(Plain):
    name = "test-silent"

    def caption(self, images: Any) -> list[str]:  # but can_caption stays False
        return []


@pytest.fixture
def aligners() -> Registry[Any]:
    return Registry("aligners", sourced=False, check=_aligner_declarations)


@pytest.mark.parametrize("name", NAMES)
def test_built_ins_declare_what_the_older_probes_find(name: str) -> None:
    aligner = ALIGNERS.create(name)
    for flag, method in CAPABILITIES.items():
        assert bool(getattr(aligner, flag)) == (flag in DECLARED.get(name, set())), flag
        assert callable(getattr(aligner, method, None)) == (flag in DECLARED.get(name, set())), method
    assert aligner.text_input == getattr(aligner, "text_input", "features") == TEXT_INPUT.get(name, "features")
    assert type(aligner).declaration_problems() == []


def test_a_flag_may_follow_the_hyper_parameters() -> None:
    """Codebook-VLP writes codes only with its codebook; its methods stay defined either way."""
    without = ALIGNERS.create("codebook_vlp", codebook=False, mim=False)
    assert not without.quantizes_images and not without.gives_code_indices
    assert ALIGNERS.create("codebook_vlp").quantizes_images


def test_a_missing_capability_is_a_one_line_error_and_invisible_to_getattr() -> None:
    ridge = ALIGNERS.create("ridge")
    with pytest.raises(MissingCapability, match=r"^ridge: cannot generate captions \(RidgeAligner.can_caption is False\)$"):
        ridge.caption(torch.zeros(1, 2))
    assert isinstance(MissingCapability("x"), AlignError)
    assert getattr(ridge, "caption", None) is None and not hasattr(ridge, "retrieval_scores")


def test_registration_refuses_a_flag_without_its_method(aligners: Registry[Any]) -> None:
    with pytest.raises(DeclarationError) as err:
        aligners.add(ClaimsToCaption.name, ClaimsToCaption)
    assert str(err.value) == (f"aligner 'test-claims' ({__name__}.ClaimsToCaption): declares can_caption but "
                              "does not define caption()")
    assert isinstance(err.value, AlignError) and ClaimsToCaption.name not in aligners


def test_registration_refuses_a_method_without_its_flag(aligners: Registry[Any]) -> None:
    with pytest.raises(DeclarationError, match=r"defines caption\(\) but does not declare can_caption = True$"):
        aligners.add(CaptionsSilently.name, CaptionsSilently)


def test_registration_refuses_a_bad_input_kind(aligners: Registry[Any]) -> None:
    bad = type("BadInput", (Plain,), {"name": "test-bad-input", "text_input": "captions"})
    with pytest.raises(DeclarationError, match=r"text_input must be one of features, strings, none, not 'captions'"):
        aligners.add(bad.name, bad)


def test_a_consistent_class_registers_and_captions(aligners: Registry[Any]) -> None:
    aligners.add(Plain.name, Plain)
    aligners.add(Captioner.name, Captioner)
    assert aligners.create(Captioner.name).caption([0, 1]) == ["a picture"] * 2
    assert not aligners.create(Plain.name).can_caption


def test_a_factory_function_is_checked_on_the_first_aligner_it_builds(aligners: Registry[Any]) -> None:
    @aligners.register("test-factory")
    def factory(**hparams: Any) -> Aligner:
        return ClaimsToCaption(**hparams)

    with pytest.raises(DeclarationError, match="declares can_caption"):
        aligners.create("test-factory")


def test_other_registries_check_nothing() -> None:
    widgets: Registry[Any] = Registry("widgets")
    widgets.add("toy:claims", ClaimsToCaption)
    assert widgets.create("toy:claims").can_caption
