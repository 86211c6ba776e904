"""Hugging Face vision models as frozen encoders (``hf:<hub id>`` or ``hf:<local directory>``).

Models and image processors load with ``AutoModel``/``AutoImageProcessor`` from a local directory or
from the hub cache in ``$ALIGN_HOME/hf/hub``; nothing is downloaded unless ``download=True``. For
dual-tower checkpoints (CLIP, SigLIP) the vision tower is used without its projection.

Tokens are ``last_hidden_state`` without prefix tokens (CLS, registers: whatever precedes the patch
grid, counted from ``config.patch_size``), or the flattened map of CNNs. The pooled embedding is the
model's ``pooler_output``; when the checkpoint has no trained pooler it is the CLS token, and the
token mean for models with neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from align.encoders._common import looks_like_path
from align.encoders.base import DataConfig, VisionEncoder
from align.errors import AssetMissingError, BadInputError
from align.registry import VISION_ENCODERS

_MAX_PREFIX_TOKENS = 16  # more "extra" tokens than this means a hierarchical model, not CLS/registers


class HFImageTransform:
    """Picklable ``processor(images=...)["pixel_values"][0]``."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"HFImageTransform({type(self.processor).__name__})"


def _field(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _interpolation(resample: Any) -> str:
    from PIL.Image import Resampling

    if isinstance(resample, int):
        resample = Resampling(resample)
    name = str(getattr(resample, "name", resample) or "bilinear").lower()
    return {"lanczos": "lanczos", "bicubic": "bicubic", "nearest": "nearest"}.get(name, "bilinear")


def data_config_of(processor: Any) -> DataConfig:
    """Describe an HF image processor as a DataConfig (its own ``__call__`` does the actual work)."""
    size, crop = processor.size, getattr(processor, "crop_size", None)
    height, width = _field(size, "height"), _field(size, "width")
    short = _field(size, "shortest_edge")
    center_crop = bool(getattr(processor, "do_center_crop", False)) and _field(crop, "height")
    if center_crop:
        out_h, out_w = _field(crop, "height"), _field(crop, "width")
        crop_pct = out_h / (short or min(height, width))
        mode = "center" if short else "squash"
    elif height and width:
        out_h, out_w, crop_pct, mode = height, width, 1.0, "squash"
    else:
        out_h = out_w = short or 224
        crop_pct, mode = 1.0, "center"
    normalise = getattr(processor, "do_normalize", True)
    mean = tuple(processor.image_mean or (0.5,) * 3) if normalise else (0.0,) * 3
    std = tuple(processor.image_std or (0.5,) * 3) if normalise else (1.0,) * 3
    return DataConfig(
        input_size=(3, int(out_h), int(out_w)), mean=mean, std=std,  # type: ignore[arg-type]
        interpolation=_interpolation(getattr(processor, "resample", None)), crop_pct=float(crop_pct),
        crop_mode=mode,
    )


class HFVisionEncoder(VisionEncoder):
    """Adapter over a transformers vision model (see the module docstring)."""

    pool_from_tokens = False  # a trained pooler or the CLS token; only forward/encode are exact

    def __init__(self, name: str, model: nn.Module, processor: Any, *, use_pooler: bool = True) -> None:
        super().__init__()
        self.name = name
        self.model = model
        config = model.config
        self.patch_size = getattr(config, "patch_size", None)
        hidden = getattr(config, "hidden_size", None) or list(getattr(config, "hidden_sizes", [None]))[-1]
        if hidden is None:
            raise BadInputError(f"{name}: no hidden_size or hidden_sizes in its {type(config).__name__}")
        self.embed_dim = int(hidden)
        self.use_pooler = use_pooler
        self.data_config = data_config_of(processor)
        self.set_transform(HFImageTransform(processor))

    def _num_prefix(self, hidden: torch.Tensor, pixels: torch.Tensor) -> int:
        if not self.patch_size:
            return 0
        ph, pw = (self.patch_size, self.patch_size) if isinstance(self.patch_size, int) else self.patch_size
        extra = hidden.shape[1] - (pixels.shape[-2] // ph) * (pixels.shape[-1] // pw)
        return extra if 0 <= extra <= _MAX_PREFIX_TOKENS else 0

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=pixels)
        hidden = out.last_hidden_state
        if hidden.ndim == 4:  # CNNs: [B, C, H, W]
            prefix, tokens = 0, hidden.flatten(2).transpose(1, 2)
        else:
            prefix = self._num_prefix(hidden, pixels)
            tokens = hidden[:, prefix:]
        pooled = getattr(out, "pooler_output", None) if self.use_pooler else None
        if pooled is not None:
            pooled = pooled.flatten(1)
        elif prefix:
            pooled = hidden[:, 0]
        else:
            pooled = tokens.mean(dim=1)
        return pooled, tokens


def _load(identifier: str, *, download: bool, cache_dir: str, revision: str | None,
          model_kwargs: dict[str, Any]) -> tuple[nn.Module, Any, bool]:
    from transformers import AutoImageProcessor, AutoModel

    from align.assets.offline import hub_offline

    local = looks_like_path(identifier)
    source = str(Path(identifier).expanduser()) if local else identifier
    if local and not Path(source).is_dir():
        raise BadInputError(f"hf model directory {source!r} does not exist")
    options = dict(cache_dir=cache_dir, local_files_only=local or not download, revision=revision)
    try:
        with hub_offline(options["local_files_only"]):
            model, info = AutoModel.from_pretrained(source, output_loading_info=True, **options, **model_kwargs)
            processor = AutoImageProcessor.from_pretrained(source, **options)
    except OSError as error:
        if local:
            raise BadInputError(f"{source!r} holds no Hugging Face vision model with an image processor: "
                                f"{str(error).splitlines()[0]}") from None
        raise AssetMissingError(
            f"hf model {identifier!r} is not in the cache {cache_dir}; pass download=True to fetch it"
        ) from None
    untrained_pooler = any("pooler" in key.split(".") for key in info.get("missing_keys", ()))
    return model, processor, not untrained_pooler


@VISION_ENCODERS.register_source(
    "hf",
    license="per checkpoint (see its model card)",
    description="Hugging Face vision models: hf:<hub id> from $ALIGN_HOME/hf/hub (download=True to fetch) "
                "or hf:<local directory>",
)
def hf_encoder(identifier: str, *, download: bool = False, cache_dir: str | None = None,
               revision: str | None = None, **model_kwargs: Any) -> HFVisionEncoder:
    from align.assets import hf_hub_cache
    from align.assets.hashing import hf_folder_sha256

    cache_dir = cache_dir or str(hf_hub_cache())
    model, processor, pooler_ok = _load(identifier, download=download, revision=revision,
                                        cache_dir=cache_dir, model_kwargs=model_kwargs)
    vision = getattr(model, "vision_model", model)
    encoder = HFVisionEncoder(f"hf:{identifier}", vision, processor, use_pooler=pooler_ok)
    encoder.weights_sha256 = hf_folder_sha256(identifier, cache_dir, revision)  # the folder just loaded
    return encoder.freeze()  # type: ignore[return-value]
