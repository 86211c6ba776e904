"""Text towers of open_clip models (``open_clip:<arch>[.<pretrained tag>]``).

The model is loaded (and cached) by the vision side's ``load_open_clip``, so an image encoder and a
text encoder with the same name share one set of weights; this adapter only tokenises with the
model's own tokenizer and calls ``model.encode_text``. Without a pretrained tag the weights are
random (useful for tests and timing, meaningless otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from align.errors import BadInputError
from align.registry import TEXT_ENCODERS
from align.text.base import TextEncoder, check_texts


class OpenClipTextEncoder(TextEncoder):
    """CLIP text tower: ``tokenizer(texts)`` -> ``model.encode_text`` -> ``[B, embed_dim]`` float32.

    With ``normalize=True`` (the default, as CLIP's similarity uses it) rows have unit L2 norm."""

    def __init__(self, model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], name: str,
                 normalize: bool = True) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.normalize = normalize
        visual = getattr(model, "visual", None)
        dim = getattr(visual, "output_dim", None)
        self.embed_dim = int(dim) if dim else int(self._encode(["a"]).shape[-1])

    def _encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenizer(texts).to(device), normalize=self.normalize)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        texts = check_texts(texts)
        parts = [self._encode(texts[i:i + batch_size]).float().cpu() for i in range(0, len(texts), batch_size)]
        return torch.cat(parts)


@TEXT_ENCODERS.register_source(
    "open_clip",
    license="per checkpoint (see open_clip's pretrained table)",
    citation="Cherti et al., Reproducible scaling laws for contrastive language-image learning, CVPR 2023",
    description="open_clip text towers: open_clip:<arch>[.<tag>], same weights and options as the image "
                "towers; open_clip:align-tiny-clip is a random 32-d test model",
)
def open_clip_text(identifier: str, *, pretrained: str | None = None, checkpoint_path: str | None = None,
                   download: bool = False, cache_dir: str | None = None,
                   normalize: bool = True) -> OpenClipTextEncoder:
    """Weights as for ``VISION_ENCODERS.create("open_clip:...")``: a local file (``pretrained=`` or
    ``checkpoint_path=``), a cached tag, or ``download=True``; the loaded model is shared with it."""
    from align.encoders.open_clip_models import load_open_clip

    if pretrained is not None and checkpoint_path is not None:
        raise BadInputError("give open_clip weights as pretrained= or checkpoint_path=, not both")
    weights = pretrained if pretrained is not None else checkpoint_path
    if weights is not None:
        if not Path(weights).expanduser().is_file():
            raise BadInputError(f"open_clip weights file {weights!r} does not exist or is not a file")
        weights = str(Path(weights).expanduser())
    model, _preprocess, tokenizer = load_open_clip(identifier, weights, download=download, cache_dir=cache_dir)
    encoder = OpenClipTextEncoder(model, tokenizer, f"open_clip:{identifier}", normalize=normalize)
    encoder.weights_sha256 = getattr(model, "align_weights_sha256", None)
    return encoder
