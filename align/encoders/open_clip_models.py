"""open_clip image towers as frozen encoders (``open_clip:<arch>[.<tag>]``), and the shared loader.

Weights come from a local file (``pretrained=`` or ``checkpoint_path=``), or from a pretrained tag
whose file is already in open_clip's cache (the Hugging Face hub cache, or ``~/.cache/clip`` for URL
weights; ``cache_dir=`` overrides). Nothing is downloaded unless ``download=True``. With neither a
file nor a tag the model is randomly initialised (seed 0).

The pooled embedding is ``encode_image`` *unnormalised* (the projected CLS token), like
``model.encode_image(x, normalize=False)``; pass ``normalize=True`` for unit-length vectors. Tokens of
a ViT tower are its patch tokens after ``ln_post``, projected by ``proj`` to the same ``embed_dim``
(a CLS-pooled tower therefore has ``pool_from_tokens = False``). Towers without patch tokens (ResNet,
timm towers) give the pooled embedding as a single token.

``load_open_clip`` is cached, so a text encoder built from the same name reuses this very model.
``open_clip:align-tiny-clip`` is a 32px, 32-d CLIP defined in ``configs/align-tiny-clip.json``
(random weights) for offline tests.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from align.assets.hashing import file_sha256
from align.encoders._common import existing_file, seeded, unknown
from align.encoders.base import DataConfig, VisionEncoder
from align.errors import AssetMissingError, BadInputError
from align.registry import VISION_ENCODERS

CONFIG_DIR = Path(__file__).with_name("configs")
TINY_CLIP = "align-tiny-clip"
_SCHEMAS = ("hf-hub:", "local-dir:")


@functools.cache
def _add_configs() -> None:
    """Make align's own architecture JSONs (``configs/*.json``) known to open_clip, once."""
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)


def split_arch_tag(arch_tag: str) -> tuple[str, str | None]:
    """``"ViT-B-32.laion2b_s34b_b79k"`` → ``("ViT-B-32", "laion2b_s34b_b79k")``; checks both names."""
    import open_clip

    _add_configs()
    if arch_tag.startswith(_SCHEMAS):
        return arch_tag, None
    models = open_clip.list_models()
    if arch_tag in models:
        return arch_tag, None
    arch, _, tag = arch_tag.partition(".")
    if arch not in models:
        raise unknown("open_clip model", arch_tag, models, listing="open_clip.list_models()")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        raise unknown(f"pretrained tag of open_clip model {arch!r}:", tag, tags,
                      listing=f"open_clip.list_pretrained_tags_by_model('{arch}')")
    return arch, tag


def _cached_tag_file(cfg: dict[str, Any], cache_dir: str | None) -> str | None:
    """Path of a tag's weights if open_clip's download would find them already cached, else None."""
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" names the default file
        filename = filename or HF_WEIGHTS_NAME
        candidates = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []
        if filename.endswith((".bin", ".pth")) and filename != HF_WEIGHTS_NAME:
            candidates.append(filename[:-4] + ".safetensors")
        for name in [*candidates, filename]:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str):
                return found
    if cfg.get("url"):
        path = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if path.is_file():
            return str(path)
    return None


def tag_weights_file(arch_tag: str) -> str | None:
    """The cached file a pretrained tag loads from by default (no ``pretrained=`` file, no ``cache_dir``):
    what its features are computed from, so results can record its sha256; None without a tag or a file."""
    import open_clip

    arch, tag = split_arch_tag(arch_tag)
    return None if tag is None else _cached_tag_file(open_clip.get_pretrained_cfg(arch, tag), None)


def missing_weights(cfg: dict[str, Any], cache_dir: str | None) -> str:
    """Where a tag's weights were looked for, and how to provide them, in one line."""
    places = [cfg["file"]] if cfg.get("file") else []
    env = None
    if cfg.get("hf_hub"):
        from huggingface_hub.constants import HF_HUB_CACHE

        repo_id, _ = os.path.split(cfg["hf_hub"])  # as _cached_tag_file reads it
        places.append(str(Path(cache_dir or HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"))
        env = "HF_HUB_CACHE"
    if cfg.get("url"):
        places.append(str(Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(cfg["url"])))
    where = " or ".join(places) or "nowhere (the tag names no file)"
    hint = f" or set {env} to the cache that holds it" if env and cache_dir is None else ""
    return (f"weights not found under {where}; put the checkpoint there{hint} "
            "(from Python: download=True, or pretrained=<local file>)")


def load_open_clip(arch_tag: str, pretrained: str | None = None, *, download: bool = False,
                   cache_dir: str | None = None) -> tuple[nn.Module, Callable[..., torch.Tensor], Any]:
    """``(model, preprocess_val, tokenizer)`` for ``arch[.tag]``, in eval mode on CPU; cached per arguments.

    ``pretrained`` is a local weights file; with a tag as well, the tag still decides preprocessing
    and QuickGELU. ``preprocess_val`` is open_clip's own (no RGBA compositing; encoders add it)."""
    return _load_open_clip(arch_tag, pretrained, download, cache_dir)


@functools.lru_cache(maxsize=4)
def _load_open_clip(arch_tag: str, pretrained: str | None, download: bool,
                    cache_dir: str | None) -> tuple[nn.Module, Callable[..., torch.Tensor], Any]:
    import open_clip

    arch, tag = split_arch_tag(arch_tag)
    options: dict[str, Any] = {"cache_dir": cache_dir}
    weights: str | None = pretrained
    if tag is not None:
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        options.update(  # what open_clip would take from the tag if it loaded the weights itself
            force_quick_gelu=bool(cfg.get("quick_gelu", False)), image_mean=cfg.get("mean"),
            image_std=cfg.get("std"), image_interpolation=cfg.get("interpolation"),
            image_resize_mode=cfg.get("resize_mode"),
        )
        if weights is None:
            weights = _cached_tag_file(cfg, cache_dir)
        if weights is None and download:
            weights = tag
        if weights is None:
            raise AssetMissingError(f"open_clip {arch}/{tag}: {missing_weights(cfg, cache_dir)}")
    with seeded(0 if weights is None else None):
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=weights, **options)
    if weights is not None and not os.path.isfile(weights):  # a tag open_clip just downloaded
        weights = _cached_tag_file(open_clip.get_pretrained_cfg(arch, tag), cache_dir) if tag else None
    # what the features came from: the file loaded (None: seeded random init, or not found after a download)
    model.align_weights_sha256 = file_sha256(weights) if weights is not None else None
    tokenizer = open_clip.get_tokenizer(arch, cache_dir=cache_dir)
    return model.eval(), preprocess, tokenizer


def _data_config(visual: nn.Module) -> DataConfig:
    cfg = getattr(visual, "preprocess_cfg", {})
    size = cfg.get("size", 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return DataConfig(
        input_size=(3, height, width), mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        interpolation=cfg.get("interpolation", "bicubic"), crop_pct=1.0,
        crop_mode="center" if cfg.get("resize_mode", "shortest") == "shortest" else "squash",
    )


class OpenCLIPVisionEncoder(VisionEncoder):
    """The ``visual`` tower of an open_clip model (see the module docstring for pooled and tokens)."""

    def __init__(self, name: str, model: nn.Module, preprocess: Callable[..., torch.Tensor],
                 normalize: bool = False) -> None:
        from open_clip.transformer import VisionTransformer

        super().__init__()
        self.name = name
        self.visual = model.visual
        self.normalize = normalize
        self.data_config = _data_config(self.visual)
        self.set_transform(preprocess)
        self.has_patch_tokens = isinstance(self.visual, VisionTransformer)
        output_dim = getattr(self.visual, "output_dim", None)
        if output_dim is None:
            with torch.no_grad():
                output_dim = self.visual(torch.zeros(1, *self.data_config.input_size)).shape[-1]
        self.embed_dim = int(output_dim)
        self.pool_from_tokens = (
            self.has_patch_tokens and not normalize and self.visual.pool_type == "avg"
            and self.visual.attn_pool is None and not self.visual.final_ln_after_pool
        )

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.has_patch_tokens:
            out = self.visual.forward_intermediates(
                pixels, indices=1, output_fmt="NLC", normalize_intermediates=True)
            pooled, tokens = out["image_features"], out["image_intermediates"][-1]
            if self.visual.proj is not None:
                tokens = tokens @ self.visual.proj
        else:
            pooled = self.visual(pixels)
            tokens = pooled[:, None]
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return pooled, tokens


@VISION_ENCODERS.register_source(
    "open_clip",
    license="per checkpoint (see open_clip's pretrained table)",
    description="open_clip image towers: open_clip:<arch>[.<tag>]; weights from pretrained=<file> or a "
                "cached tag (download=True to fetch); open_clip:align-tiny-clip is a random 32-d test model",
)
def open_clip_encoder(identifier: str, *, pretrained: str | None = None, checkpoint_path: str | None = None,
                      download: bool = False, cache_dir: str | None = None,
                      normalize: bool = False) -> OpenCLIPVisionEncoder:
    if pretrained is not None and checkpoint_path is not None:
        raise BadInputError("give open_clip weights as pretrained= or checkpoint_path=, not both")
    weights = pretrained if pretrained is not None else checkpoint_path
    if weights is not None:
        weights = str(existing_file(weights, "open_clip weights file"))
    model, preprocess, _ = load_open_clip(identifier, weights, download=download, cache_dir=cache_dir)
    encoder = OpenCLIPVisionEncoder(f"open_clip:{identifier}", model, preprocess, normalize)
    encoder.weights_sha256 = getattr(model, "align_weights_sha256", None)
    return encoder.freeze()  # type: ignore[return-value]
