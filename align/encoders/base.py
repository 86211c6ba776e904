"""The vision-encoder protocol every adapter implements.

An encoder carries the preprocessing that matches its weights (never a global ImageNet transform),
pooled features ``[B, D]`` for retrieval-style methods and spatial tokens ``[B, N, D]`` for methods
that need the grid (LQAE, VLAP's visual prefix).

Encoders are frozen by default: parameters do not require grad and ``train()`` leaves them in eval
mode, so a LightningModule that holds one cannot update BatchNorm statistics or switch dropout on
by accident. Gradients still flow *through* a frozen encoder to its input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import nn

# DataConfig lives beside the transforms built from it; imported here, where encoders have always found it
from align.encoders.inference import inference_encoder
from align.encoders.transforms import DataConfig, RGBThen, build_transform, preprocess_batch
from align.precision import as_input, autocast_for


class VisionEncoder(nn.Module):
    """Frozen image encoder: subclasses implement :meth:`forward_tokens` (and :meth:`pool` when the
    pooled embedding is not the mean over the grid), or :meth:`encode` when pooled features do not
    follow from the returned tokens (a ViT's class token)."""

    name: str
    embed_dim: int
    data_config: DataConfig
    class_names: Sequence[str] | None = None  # set when the weights come with a classifier head
    # sha256 of the weight file(s) this instance really loaded (set by its loader); None: no weight
    # file (seeded toy models) or not known, and the registry's asset is hashed instead (feature keys).
    weights_sha256: str | None = None
    # True when ``pool(forward_tokens(x))`` equals ``forward(x)``; False for class-token ViTs, where
    # ``pool`` falls back to the grid mean and only ``encode``/``forward`` give the weights' embedding.
    pool_from_tokens: bool = True
    _frozen: bool = False

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Spatial tokens ``[B, N, D]`` (a CNN's feature map flattened, a ViT's patch tokens)."""
        if type(self).encode is VisionEncoder.encode:
            raise NotImplementedError(f"{type(self).__name__} implements neither forward_tokens nor encode")
        return self.encode(pixels)[1]

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled embedding ``[B, D]`` from the tokens; mean over the grid unless overridden."""
        return tokens.mean(dim=1)

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pooled [B, D], tokens [B, N, D])`` from one pass through the network."""
        tokens = self.forward_tokens(pixels)
        return self.pool(tokens), tokens

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encode(pixels)[0]

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits of the weights' own classifier head; only for encoders with ``class_names``."""
        raise NotImplementedError(f"{self.name} has no classifier head")

    # -- freezing ------------------------------------------------------------------------------
    def freeze(self) -> VisionEncoder:
        """No parameter gradients and eval mode that survives ``train()`` (the default after creation)."""
        self._frozen = True
        self.requires_grad_(False)
        return self.train(False)

    def unfreeze(self) -> VisionEncoder:
        """Make the encoder trainable again (fine-tuning is outside align's methods, but allowed)."""
        self._frozen = False
        self.requires_grad_(True)
        return self

    @property
    def frozen(self) -> bool:
        return self._frozen

    def train(self, mode: bool = True) -> VisionEncoder:
        return super().train(mode and not self._frozen)

    # -- preprocessing -------------------------------------------------------------------------
    def set_transform(self, transform: Callable[[Image.Image], torch.Tensor] | None) -> None:
        """Use an upstream eval transform (RGB PIL → tensor) instead of one built from ``data_config``.

        Stored outside ``nn.Module``'s bookkeeping: torchvision transforms are modules, and a
        transform must not show up in ``modules()`` or ``state_dict()``."""
        self.__dict__["_transform"] = transform

    @property
    def preprocess(self) -> Callable[[Image.Image], torch.Tensor]:
        """PIL image (any mode) → normalised ``[3, H, W]`` float tensor for this encoder's weights."""
        transform = self.__dict__.get("_transform")
        key = (id(transform), self.data_config)
        cached = self.__dict__.get("_preprocess")
        if cached is None or cached[0] != key:  # built once: callers may read this per image
            built = build_transform(self.data_config) if transform is None else RGBThen(
                transform, self.data_config.background)
            cached = self.__dict__["_preprocess"] = (key, built)
        return cached[1]

    # -- convenience ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 64) -> torch.Tensor:
        """Pooled embeddings ``[len(images), D]`` (float32, on CPU) of PIL images, preprocessed a batch
        at a time (:func:`preprocess_batch`) and computed by the encoder's inference copy where it has
        one (:mod:`align.encoders.inference`)."""
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = preprocess_batch(self.preprocess, images[start:start + batch_size])
            runner = inference_encoder(self)
            with autocast_for(self):
                chunks.append(runner(as_input(runner, batch.to(self.device))).float().cpu())
        if not chunks:
            return torch.empty(0, self.embed_dim)
        return torch.cat(chunks)

    def extra_repr(self) -> str:
        return f"name={getattr(self, 'name', '?')!r}, embed_dim={getattr(self, 'embed_dim', '?')}"

