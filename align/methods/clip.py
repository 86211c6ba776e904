"""CLIP itself as a reference row: a pretrained open_clip model scored through its own two towers.

Nothing is fitted. CLIP's image and text towers were trained together into one space, so that space is
the shared space, and embedding is L2 normalisation (open_clip's image encoder gives the projected
features unnormalised; CLIP's own similarity is the cosine). The row shows what a model trained on
image-text pairs end to end reaches on the same splits and tasks, beside the aligners that only map two
frozen unimodal encoders.

The aligner brings its encoder pair (``own_encoders``: ``open_clip:<model>`` for images and for text),
and the benchmark scores it on that pair only; on features of any other encoders its numbers would mean
nothing, so :meth:`~align.methods.framework.base.Aligner.check_encoders` refuses them in one line.
``model`` must name a pretrained tag (``ViT-B-32.openai``): random weights are no reference. The weights
are found as the open_clip encoders find them (:mod:`align.encoders.open_clip_models`: a file in open_clip's
cache, never downloaded by a run); a config entry marked ``optional: true`` is skipped in one line on a
machine without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from align.errors import AlignError, BadInputError
from align.methods.framework.base import Aligner, check_features
from align.methods.framework.hparams import HParams, param
from align.registry import ALIGNERS

DEFAULT_MODEL = "ViT-B-32.openai"


def model_width(model: str) -> int:
    """The shared embedding width of open_clip model ``arch.tag`` (from its config; no weights are read), or a
    one-line error for an unknown model or one without a pretrained tag."""
    import open_clip

    from align.encoders.open_clip_models import split_arch_tag

    try:
        arch, tag = split_arch_tag(model)
    except AlignError as err:
        raise BadInputError(f"clip: model: {err}") from None
    if tag is None:
        raise BadInputError(f"clip: model must name a pretrained tag ('<arch>.<tag>', e.g. {DEFAULT_MODEL}), "
                            f"got {model!r}; random weights are no reference")
    return int(open_clip.get_model_config(arch)["embed_dim"])


@dataclass(frozen=True)
class ClipHParams(HParams):
    model: str = param(DEFAULT_MODEL, want="an open_clip '<arch>.<pretrained tag>' such as ViT-B-32.openai")


@ALIGNERS.register(
    "clip",
    description="reference row: a pretrained open_clip model through its own image and text towers, nothing "
    "fitted (shared space = CLIP's). model: open_clip '<arch>.<tag>' (default ViT-B-32.openai).",
    citation="Radford et al., Learning transferable visual models from natural language supervision, ICML 2021",
)
class ClipReference(Aligner):
    """CLIP's own space: image and text features of one open_clip model, L2-normalised; no fit."""

    name = "clip"
    config_class = ClipHParams
    config: ClipHParams
    fits_on_pairs: ClassVar[bool] = False

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        width = model_width(self.config.model)  # an unknown model is refused when the config is checked
        self.image_dim = self.text_dim = width

    @property
    def own_encoders(self) -> tuple[str, str]:
        encoder = f"open_clip:{self.config.model}"
        return encoder, encoder

    def fit(self, image_features: torch.Tensor | None = None,
            text_features: torch.Tensor | None = None) -> ClipReference:
        """Nothing to learn; features, if given, are only checked to be this model's width."""
        if image_features is not None:
            check_features(image_features, "clip.fit: image features", self.image_dim)
        if text_features is not None:
            check_features(text_features, "clip.fit: text features", self.text_dim)
        return self

    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        return F.normalize(check_features(image_features, "clip.encode_image", self.image_dim), dim=-1)

    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        return F.normalize(check_features(text_features, "clip.encode_text", self.text_dim), dim=-1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}  # nothing fitted: the model's weights are open_clip's, found by the encoders

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise BadInputError(f"clip: a saved CLIP reference holds no tensors, got {', '.join(sorted(state))}")
