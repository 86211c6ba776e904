"""The float32 inference copy (align/encoders/inference.py): BatchNorm folded into the conv before it,
activations in place where safe, channels-last; the same features as the encoder itself, used by every
feature path, never visible in the encoder's weights."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image
from torch import nn

from align.encoders import inference
from align.encoders.base import DataConfig, VisionEncoder
from align.encoders.inference import common_plan, inference_encoder, plan_of
from align.features.encoding import encode_pil, encode_pil_tokens
from align.precision import set_precision

TOLERANCE = 1e-5  # relative to each item's norm
DATA = DataConfig(input_size=(3, 24, 24), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_pct=1.0)


def _randomise_batchnorms(module: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine weights far from the identity, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=generator))
            bn.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            bn.weight.data.copy_(torch.randn(n, generator=generator))
            bn.bias.data.copy_(torch.randn(n, generator=generator))


class Block(nn.Module):
    """EfficientNet-style: attribute convs and BNs called explicitly, one activation shared by two calls."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.expand = nn.Conv2d(channels, 2 * channels, 1, bias=False)
        self.bn0 = nn.BatchNorm2d(2 * channels)
        self.depthwise = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * channels)
        self.project = nn.Conv2d(2 * channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn0(self.expand(x)))
        y = self.act(self.bn1(self.depthwise(y)))
        return x + self.bn2(self.project(y))


class Shared(nn.Module):
    """Outputs read twice: the conv's (its BatchNorm must not be folded) and the BatchNorm's (the ReLU
    must not overwrite it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        z = self.bn(y)
        return y + z + self.act(z)


class TinyNet(VisionEncoder):
    """conv+BN+ReLU6 in a Sequential, an attribute-style block, a shared conv output, a head."""

    def __init__(self, middle: nn.Module | None = None) -> None:
        super().__init__()
        self.name, self.embed_dim, self.data_config = "tiny", 8, DATA
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.middle = middle if middle is not None else Block(8)
        self.shared = Shared(8)
        self.head = nn.Linear(8, 3)
        self.class_names = ["a", "b", "c"]

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.shared(self.middle(self.stem(pixels))).flatten(2).transpose(1, 2)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


def tiny(middle: nn.Module | None = None) -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet(middle)
    _randomise_batchnorms(net)
    return net.freeze()  # type: ignore[return-value]


def images(count: int = 5) -> list[Image.Image]:
    generator = torch.Generator().manual_seed(1)
    return [Image.fromarray(torch.randint(0, 256, (30, 26, 3), generator=generator, dtype=torch.uint8).numpy())
            for _ in range(count)]


def relative(new: torch.Tensor, old: torch.Tensor) -> float:
    new, old = new.flatten(1).double(), old.flatten(1).double()
    return float(((new - old).norm(dim=1) / old.norm(dim=1)).max())


def plain(encoder: VisionEncoder, pictures: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and tokens computed by the encoder itself, one image at a time in preprocessing."""
    pixels = torch.stack([encoder.preprocess(image) for image in pictures])
    with torch.inference_mode():
        return encoder(pixels), encoder.forward_tokens(pixels)


def test_plan_folds_every_batchnorm_fed_by_a_conv_alone() -> None:
    net = tiny()
    plan = common_plan(plan_of(net, method) for method in inference.TRACED_METHODS)
    assert plan.folds == {"stem.0": "stem.1", "middle.expand": "middle.bn0", "middle.depthwise": "middle.bn1",
                          "middle.project": "middle.bn2"}
    assert plan.inplace == {"stem.2", "middle.act"}  # not shared.act: its input is read twice


def test_copy_has_the_batchnorms_folded_and_the_same_features() -> None:
    net = tiny()
    fast = inference_encoder(net)
    assert fast is not net and fast.channels_last
    remaining = [name for name, m in fast.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert remaining == ["shared.bn"]
    assert fast.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    pooled, tokens = plain(net, images())
    assert relative(encode_pil(net, images())[0], pooled) < TOLERANCE
    assert relative(encode_pil_tokens(net, images()), tokens) < TOLERANCE
    assert relative(net.encode_images(images(), batch_size=2), pooled) < TOLERANCE


def test_every_feature_path_runs_the_copy() -> None:
    net = tiny()
    fast = inference_encoder(net)
    calls = []
    fast.stem.register_forward_hook(lambda *_: calls.append(1))
    net.encode_images(images(4), batch_size=2)
    encode_pil(net, images(3))
    encode_pil_tokens(net, images(3))
    assert len(calls) == 4
    assert inference_encoder(net) is fast  # built once


def test_the_encoder_itself_is_untouched() -> None:
    net, reference = tiny(), tiny()
    inference_encoder(net)
    encode_pil(net, images())
    assert list(net.state_dict()) == list(reference.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), reference.state_dict().values()))
    assert [n for n, _ in net.named_modules()] == [n for n, _ in reference.named_modules()]
    assert isinstance(net.stem[1], nn.BatchNorm2d) and not net.middle.act.inplace


def test_new_weights_give_a_new_copy() -> None:
    net, other = tiny(), tiny()
    _randomise_batchnorms(other, seed=5)
    before = encode_pil(net, images())[0]
    net.load_state_dict(other.state_dict())  # in place: the same tensors, new values
    after = encode_pil(net, images())[0]
    assert relative(after, plain(other, images())[0]) < TOLERANCE
    assert relative(after, before) > 1e-2


class StandardisedConv(nn.Conv2d):
    """Normalises its weight per output channel in forward: a BatchNorm folded into it would be undone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / w.std(dim=(1, 2, 3), keepdim=True)
        return self._conv_forward(x, w, self.bias)


def test_a_copy_that_differs_is_not_used(caplog: pytest.LogCaptureFixture) -> None:
    middle = nn.Sequential(StandardisedConv(8, 8, 3, padding=1), nn.BatchNorm2d(8))
    net = tiny(middle)
    assert "middle.0" in plan_of(net, "encode").folds  # the graph allows it; only the probe can tell
    with caplog.at_level(logging.WARNING, logger="align.encoders.inference"):
        assert inference_encoder(net) is net
    assert "differs" in caplog.text
    pooled, _ = plain(net, images())
    assert torch.equal(encode_pil(net, images())[0], pooled)


class BatchNormAct(nn.BatchNorm2d):
    """timm-style BatchNorm with its activation inside: never folded (the activation would be lost)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(super().forward(x))


def test_batchnorm_subclasses_are_not_folded() -> None:
    net = tiny(nn.Sequential(nn.Conv2d(8, 8, 1), BatchNormAct(8)))
    _randomise_batchnorms(net)
    assert "middle.0" not in plan_of(net, "encode").folds
    fast = inference_encoder(net)
    assert isinstance(fast.middle[1], BatchNormAct)
    assert relative(encode_pil(net, images())[0], plain(net, images())[0]) < TOLERANCE


def test_untraceable_forward_still_gets_an_exact_copy() -> None:
    class Branchy(TinyNet):
        def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
            if pixels.sum() > 0:  # data-dependent: fx cannot trace it
                pixels = pixels * 1.0
            return super().forward_tokens(pixels)

    torch.manual_seed(0)
    net = Branchy()
    _randomise_batchnorms(net)
    net.freeze()
    assert plan_of(net, "encode").folds == {}
    fast = inference_encoder(net)
    assert fast is not net and isinstance(fast.stem[1], nn.BatchNorm2d)  # channels-last only
    assert relative(encode_pil(net, images())[0], plain(net, images())[0]) < TOLERANCE


@pytest.mark.parametrize("change", ["unfrozen", "training", "bfloat16", "float64", "no batchnorm"])
def test_who_gets_no_copy(change: str) -> None:
    net = tiny()
    if change == "unfrozen":
        net.unfreeze()
    elif change == "training":
        net.unfreeze().train()
    elif change == "bfloat16":
        set_precision(net, "bfloat16")
    elif change == "float64":
        net.double()
    else:
        net = tiny(nn.Identity())
        net.stem, net.shared = nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Identity()
    assert inference_encoder(net) is net
