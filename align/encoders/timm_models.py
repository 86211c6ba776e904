"""Any ``timm.create_model`` name as a frozen encoder (``timm:<arch>[.<tag>]``).

Weights never come from the hub unless asked: the default is ``pretrained=False``. Pass
``checkpoint_path=`` (a local state dict), ``pretrained_cfg_overlay=dict(file=...)`` (a local file in
timm's pretrained format), or ``pretrained`` set to true for timm's standard loading (its cache, then the hub).
Preprocessing is timm's own eval transform from ``resolve_model_data_config`` (conventions §4.8).

Tokens are ``forward_features`` with prefix (class/register/distillation) tokens dropped for ViTs and
the map flattened for CNNs; the pooled embedding is ``forward_head(features, pre_logits=True)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from align.encoders._common import RANDOM_INIT, existing_file, unknown
from align.encoders.base import DataConfig, VisionEncoder
from align.registry import VISION_ENCODERS

_GRID_POOLS = ("avg", "max", "avgmax", "catavgmax", "fast", "fastavg")


def _global_pool_module(model: nn.Module) -> nn.Module | None:
    """A model's ``SelectAdaptivePool2d`` (on the model or on its ``head``), if it has one."""
    for owner in (model, getattr(model, "head", None)):
        pool = getattr(owner, "global_pool", None)
        if isinstance(pool, nn.Module) and hasattr(pool, "pool_type"):
            return pool
    return None


def _num_prefix_tokens(model: nn.Module) -> int:
    """Class/distillation/register tokens in front of the patch tokens of ``forward_features``."""
    count = getattr(model, "num_prefix_tokens", None)
    if count is not None:
        return int(count)
    names = [name for name, _ in model.named_parameters(recurse=False)]
    return int(any(n.startswith("cls_token") for n in names)) + int("dist_token" in names)


class TimmEncoder(VisionEncoder):
    """Adapter over a timm model; ``class_names`` only when the weights' head has named classes.

    ``pool(tokens)`` rebuilds a feature tensor from the tokens (zeros for prefix tokens, a ``N x 1``
    grid for maps) and runs the model's own head, which is exact for grid-pooling heads (average,
    max); for class-token or attention-pooled heads ``pool_from_tokens`` is False."""

    def __init__(self, name: str, model: nn.Module, class_names: list[str] | None = None) -> None:
        import timm.data

        super().__init__()
        self.name = name
        self.model = model
        self.embed_dim = int(model.num_features)
        self.class_names = class_names
        cfg = timm.data.resolve_model_data_config(model)
        self.data_config = DataConfig(
            input_size=tuple(cfg["input_size"]), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
            interpolation=cfg["interpolation"], crop_pct=float(cfg["crop_pct"]),
            crop_mode=cfg.get("crop_mode", "center"),
        )
        self.set_transform(timm.data.create_transform(**cfg, is_training=False))
        self.num_prefix_tokens = _num_prefix_tokens(model)
        self.channels_last = str(getattr(model, "output_fmt", "NCHW")) == "NHWC"
        # mobilenetv3-style heads widen after pooling (pre-logits 1024 vs 288 channels); there the
        # pooled embedding is the global pool itself, so tokens and pooled share embed_dim.
        self.hidden_head = int(getattr(model, "head_hidden_size", None) or self.embed_dim) != self.embed_dim
        self._feature_ndim: int | None = None  # 3 for [B, L, D] features, 4 for maps; seen in encode
        self.pool_from_tokens = self._grid_pooled()
        # volo-style heads add logits from the patch tokens; a pooled vector cannot give those
        has_token_logits = getattr(model, "aux_head", None) is not None
        self._head_on_pooled = not has_token_logits and (not self.hidden_head or self._head_pools_first())

    def _as_map(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` as a 1x1 feature map in the model's layout."""
        return pooled[:, None, None, :] if self.channels_last else pooled[:, :, None, None]

    def _head_pools_first(self) -> bool:
        """Whether a widened head starts with its global pool, so it can run on a pooled vector
        (mobilenetv3: yes; heads with a conv before pooling: no). Checked on a random 2x2 map."""
        shape = (2, 2, 2, self.embed_dim) if self.channels_last else (2, self.embed_dim, 2, 2)
        features = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                direct = self.model.forward_head(features)
                via_pooled = self.model.forward_head(self._as_map(self._pooled(features)))
            return bool(torch.allclose(direct, via_pooled, atol=1e-4, rtol=1e-3))
        except (RuntimeError, ValueError):
            return False
        finally:
            self.model.train(training)

    def _grid_pooled(self) -> bool:
        """Whether the pooled embedding is a function of the patch/grid tokens alone."""
        pool = _global_pool_module(self.model)
        if pool is not None:
            return str(pool.pool_type) in _GRID_POOLS
        if self.hidden_head:
            return True  # plain mean over the grid, see _pooled
        pool_type = getattr(self.model, "global_pool", None)
        return pool_type in _GRID_POOLS and getattr(self.model, "attn_pool", None) is None

    def _tokens(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 3:
            return features[:, self.num_prefix_tokens:]
        if self.channels_last:
            return features.flatten(1, 2)
        return features.flatten(2).transpose(1, 2)

    def _pooled(self, features: torch.Tensor) -> torch.Tensor:
        if not self.hidden_head:
            return self.model.forward_head(features, pre_logits=True)
        pool = _global_pool_module(self.model)
        if pool is not None:
            return pool(features).flatten(1)
        return self._tokens(features).mean(dim=1)

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(pixels)
        if not isinstance(features, torch.Tensor):
            raise NotImplementedError(f"{self.name}: forward_features returns {type(features).__name__}, "
                                      "not one feature tensor (multi-branch models are not supported)")
        self._feature_ndim = features.ndim
        pooled, tokens = self._pooled(features), self._tokens(features)
        if tokens.shape[1] == 0:  # PiT keeps only its class tokens: the pooled vector is the one token
            tokens = pooled[:, None]
        return pooled, tokens

    def _features_from(self, tokens: torch.Tensor) -> torch.Tensor:
        """A feature tensor in the model's own layout that global pooling treats like the original."""
        if self._feature_ndim is None:
            with torch.no_grad():
                self.encode(torch.zeros(1, *self.data_config.input_size, device=tokens.device))
        if self._feature_ndim == 3:
            prefix = tokens.new_zeros(tokens.shape[0], self.num_prefix_tokens, tokens.shape[2])
            return torch.cat([prefix, tokens], dim=1)  # grid pools skip prefix tokens
        if self.channels_last:
            return tokens.unsqueeze(2)  # [B, N, 1, D]
        return tokens.transpose(1, 2).unsqueeze(-1)  # [B, D, N, 1]

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self.pool_from_tokens:
            return tokens.mean(dim=1)
        return self._pooled(self._features_from(tokens))

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        if not self.class_names:
            raise NotImplementedError(f"{self.name} has no named classifier head")
        if not self._head_on_pooled:
            raise NotImplementedError(f"{self.name}: its head needs the feature map, not only the pooled "
                                      "embedding, to compute logits")
        if self.hidden_head:  # the head starts with a global pool, which is the identity on a 1x1 map
            return self.model.forward_head(self._as_map(pooled))
        head = self.model.get_classifier()
        if hasattr(head, "global_pool") and hasattr(head, "fc"):  # a whole ClassifierHead (Sequencer)
            head = head.fc
        if isinstance(head, tuple):  # distilled DeiT: the eval logits average both heads
            return torch.stack([h(pooled) for h in head]).mean(0)
        if isinstance(head, nn.Conv2d):  # DLA, DPN, ResNetV2: 1x1-conv classifiers
            return head(pooled[:, :, None, None]).flatten(1)
        return head(pooled)


def _imagenet_names(model: nn.Module) -> list[str] | None:
    """Short ImageNet class names when the head is an ImageNet head timm can identify."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if not subset:
        return None
    names = [d.split(",")[0].strip() for d in ImageNetInfo(subset).label_descriptions()]
    return names if len(names) == getattr(model, "num_classes", 0) else None


def _check_name(identifier: str) -> None:
    import timm

    arch, _, tag = identifier.partition(".")
    if not timm.is_model(arch):
        raise unknown("timm model", identifier, timm.list_models(), listing="timm.list_models()")
    if tag:
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        if tag not in tags:
            raise unknown(f"tag of timm model {arch!r}:", tag, tags,
                          listing=f"timm.list_pretrained('{arch}.*')")


def create_timm(identifier: str, *, pretrained: bool = False, checkpoint_path: str | None = None,
                class_names: list[str] | None = None, **model_kwargs: Any) -> TimmEncoder:
    """Build a timm model as an encoder; ``model_kwargs`` go to ``timm.create_model``."""
    import timm

    _check_name(identifier)
    overlay = model_kwargs.get("pretrained_cfg_overlay") or {}
    if overlay.get("file"):
        existing_file(overlay["file"], "timm pretrained_cfg_overlay file")
        pretrained = True  # timm only reads ``file`` when loading pretrained weights
    if checkpoint_path is not None:
        checkpoint_path = str(existing_file(checkpoint_path, "timm checkpoint_path"))
    model = timm.create_model(identifier, pretrained=pretrained, checkpoint_path=checkpoint_path,
                              **model_kwargs)
    if class_names is None and (pretrained or checkpoint_path) and getattr(model, "num_classes", 0):
        class_names = _imagenet_names(model)
    encoder = TimmEncoder(f"timm:{identifier}", model, class_names)
    encoder.weights_sha256 = _weights_sha256(model, pretrained, checkpoint_path, overlay.get("file"))
    return encoder.freeze()  # type: ignore[return-value]


def _weights_sha256(model: nn.Module, pretrained: bool, checkpoint_path: str | None,
                    overlay_file: str | None) -> str | None:
    """sha256 of the files timm loaded: the checkpoint (over the pretrained weights, if any), the
    overlay file, or the hub-cache file of a ``pretrained`` load; ``random-init`` without weights, None
    when the file timm read cannot be found."""
    from align.assets.hashing import combined_sha256, file_sha256

    files: dict[str, str] = {}
    if pretrained:
        found = overlay_file or _hub_file(getattr(model, "pretrained_cfg", None) or {})
        if found is None:
            return None
        files["pretrained"] = file_sha256(found)
    if checkpoint_path is not None:
        files["checkpoint"] = file_sha256(checkpoint_path)
    if not files:
        return RANDOM_INIT
    return next(iter(files.values())) if len(files) == 1 else combined_sha256(files)


def _hub_file(cfg: dict[str, Any]) -> str | None:
    """Where timm's ``pretrained`` load found its weights (hub cache or torch hub folder), if local."""
    import os

    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return str(cfg["file"])
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        for filename in (cfg.get("hf_hub_filename"), "model.safetensors", "open_clip_model.safetensors",
                         "pytorch_model.bin"):
            found = filename and try_to_load_from_cache(cfg["hf_hub_id"], filename)
            if isinstance(found, str):
                return found
    if cfg.get("url"):
        from torch.hub import get_dir

        path = os.path.join(get_dir(), "checkpoints", os.path.basename(cfg["url"]))
        if os.path.isfile(path):
            return path
    return None


@VISION_ENCODERS.register_source(
    "timm",
    license="per checkpoint (see timm's pretrained_cfg)",
    description="any timm.create_model name; random init unless pretrained is true (opt-in hub/cache), checkpoint_path= "
                "or pretrained_cfg_overlay=dict(file=...)",
)
def timm_encoder(identifier: str, **kwargs: Any) -> TimmEncoder:
    return create_timm(identifier, **kwargs)

