"""Vision-encoder adapters on tiny, randomly initialised models: shapes, pooling, preprocessing, errors.

Everything here is built offline in well under a second per model; real weights are exercised in
tests/integration/test_vision_real.py.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from align.encoders.base import VisionEncoder
from align.errors import AssetMissingError, BadInputError, UnknownNameError
from align.registry import VISION_ENCODERS

BATCH = 2

# name -> factory kwargs; "hf:<tiny>" is replaced by a directory written in a fixture.
TINY = {
    **{name: {} for name in VISION_ENCODERS.list("toy:*")},
    "timm:test_vit": {},  # class-token pooling: pool(tokens) is not the pooled embedding
    "timm:test_resnet": {},
    "open_clip:align-tiny-clip": {},
    "torchvision:mobilenet_v2.imagenet1k_v1": {"pretrained": False},
    "efficientnet_lite:lite0.imagenet": {"pretrained": False},
    "hf:<tiny>": {},
}


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def build(tiny_hf_dir: Path):
    cache: dict[str, VisionEncoder] = {}

    def make(name: str) -> VisionEncoder:
        if name not in cache:
            real = name.replace("<tiny>", str(tiny_hf_dir))
            cache[name] = VISION_ENCODERS.create(real, **TINY[name])
        return cache[name]

    return make


def _pixels(encoder: VisionEncoder) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, *encoder.data_config.input_size, generator=generator)


@pytest.mark.parametrize("name", list(TINY))
def test_shapes_and_consistency(name: str, build) -> None:
    encoder = build(name)
    x = _pixels(encoder)
    with torch.no_grad():
        pooled, tokens = encoder.encode(x)
        forward = encoder(x)
        alone = encoder.forward_tokens(x)
    assert pooled.shape == (BATCH, encoder.embed_dim)
    assert tokens.ndim == 3 and tokens.shape[0] == BATCH and tokens.shape[2] == encoder.embed_dim
    assert torch.isfinite(pooled).all() and torch.isfinite(tokens).all()
    torch.testing.assert_close(forward, pooled)
    torch.testing.assert_close(alone, tokens)
    meta = VISION_ENCODERS.meta(name.replace("<tiny>", "x"))
    if meta.embed_dim is not None:
        assert meta.embed_dim == encoder.embed_dim


@pytest.mark.parametrize("name", list(TINY))
def test_pool_of_tokens_is_the_pooled_embedding_when_claimed(name: str, build) -> None:
    encoder = build(name)
    with torch.no_grad():
        pooled, tokens = encoder.encode(_pixels(encoder))
        from_tokens = encoder.pool(tokens)
    assert from_tokens.shape == pooled.shape
    if encoder.pool_from_tokens:
        torch.testing.assert_close(from_tokens, pooled, atol=1e-5, rtol=1e-4)


def test_pool_from_tokens_flags() -> None:
    assert VISION_ENCODERS.create("toy:cnn").pool_from_tokens
    assert VISION_ENCODERS.create("toy:vit").pool_from_tokens  # mean-pooled ViT
    assert not VISION_ENCODERS.create("timm:test_vit").pool_from_tokens  # class token
    assert not VISION_ENCODERS.create("toy:clip").pool_from_tokens


@pytest.mark.parametrize("name", list(TINY))
def test_transparent_rgba_becomes_normalised_white(name: str, build) -> None:
    encoder = build(name)
    cfg = encoder.data_config
    pixels = encoder.preprocess(Image.new("RGBA", (47, 61), (0, 0, 0, 0)))
    assert pixels.shape == cfg.input_size and pixels.dtype == torch.float32
    white = (1.0 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    torch.testing.assert_close(pixels, white[:, None, None].expand_as(pixels), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["toy:cnn", "timm:test_resnet", "hf:<tiny>", "open_clip:align-tiny-clip"])
def test_opaque_pixels_survive_compositing(name: str, build) -> None:
    encoder = build(name)
    red_rgba = encoder.preprocess(Image.new("RGBA", (40, 40), (255, 0, 0, 255)))
    red_rgb = encoder.preprocess(Image.new("RGB", (40, 40), (255, 0, 0)))
    torch.testing.assert_close(red_rgba, red_rgb)


@pytest.mark.parametrize("name", ["toy:cnn", "timm:test_vit", "hf:<tiny>", "open_clip:align-tiny-clip",
                                  "torchvision:mobilenet_v2.imagenet1k_v1"])
def test_preprocess_pickles_for_dataloader_workers(name: str, build) -> None:
    encoder = build(name)
    image = Image.new("RGB", (50, 40), (10, 200, 30))
    restored = pickle.loads(pickle.dumps(encoder.preprocess))
    torch.testing.assert_close(restored(image), encoder.preprocess(image))


WITH_HEADS = [n for n in TINY if n.startswith(("toy:cnn", "toy:vit", "torchvision:", "efficientnet"))]


@pytest.mark.parametrize("name", WITH_HEADS)
def test_classify_uses_the_weights_head(name: str, build) -> None:
    encoder = build(name)
    assert encoder.class_names
    with torch.no_grad():
        logits = encoder.classify(encoder(_pixels(encoder)))
    assert logits.shape == (BATCH, len(encoder.class_names))


def test_torchvision_head_matches_the_model_forward() -> None:
    from torchvision.models import mobilenet_v2

    encoder = VISION_ENCODERS.create("torchvision:mobilenet_v2.imagenet1k_v1", pretrained=False)
    model = mobilenet_v2().eval()
    model.features, model.classifier = encoder.trunk, encoder.head
    x = _pixels(encoder)
    with torch.no_grad():
        torch.testing.assert_close(encoder.classify(encoder(x)), model(x), atol=1e-5, rtol=1e-4)
    assert encoder.class_names[285] == "Egyptian cat"
    assert encoder.data_config.crop_pct == 224 / 256 and encoder.data_config.interpolation == "bilinear"


def test_encoders_start_frozen_and_stay_in_eval_mode() -> None:
    encoder = VISION_ENCODERS.create("toy:cnn")
    assert encoder.frozen and not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()  # what a LightningModule does to its children at fit start
    assert not any(m.training for m in encoder.modules())
    x = _pixels(encoder).requires_grad_(True)
    encoder(x).sum().backward()  # gradients still reach the input
    assert x.grad is not None
    encoder.unfreeze().train()
    assert encoder.training and all(p.requires_grad for p in encoder.parameters())


def test_toy_encoders_are_seeded_and_leave_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = VISION_ENCODERS.create("toy:cnn", seed=0), VISION_ENCODERS.create("toy:cnn", seed=0)
    c = VISION_ENCODERS.create("toy:cnn", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    x = _pixels(a)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
        assert not torch.allclose(a(x), c(x))


def test_encode_images_batches_pil_images() -> None:
    encoder = VISION_ENCODERS.create("toy:cnn")
    images = [Image.new("RGB", (30 + i, 20), (i * 40, 0, 0)) for i in range(5)]
    features = encoder.encode_images(images, batch_size=2)
    assert features.shape == (5, encoder.embed_dim)
    torch.testing.assert_close(features[:1], encoder.encode_images(images[:1]))


# -- loading real weight files through each adapter -------------------------------------------------


def test_timm_loads_a_local_checkpoint(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(3)
    reference = timm.create_model("test_resnet").eval()
    path = tmp_path / "test_resnet.pth"
    torch.save(reference.state_dict(), path)
    for kwargs in ({"checkpoint_path": str(path)}, {"pretrained_cfg_overlay": {"file": str(path)}}):
        encoder = VISION_ENCODERS.create("timm:test_resnet", **kwargs)
        x = _pixels(encoder)
        with torch.no_grad():
            torch.testing.assert_close(encoder.classify(encoder(x)), reference(x))
        assert encoder.class_names is not None and len(encoder.class_names) == 1000


def test_timm_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(BadInputError, match="nope.pth"):
        VISION_ENCODERS.create("timm:test_resnet", checkpoint_path=str(missing))
    with pytest.raises(BadInputError, match="nope.pth"):
        VISION_ENCODERS.create("timm:test_resnet", pretrained_cfg_overlay={"file": str(missing)})


def test_open_clip_loads_a_local_file_and_shares_the_model(tmp_path: Path) -> None:
    from align.encoders.open_clip_models import load_open_clip

    model, _, tokenizer = load_open_clip("align-tiny-clip", None)
    assert VISION_ENCODERS.create("toy:clip").visual is model.visual  # one model for both sides
    assert tokenizer(["a photo of a cat"]).shape == (1, 16)
    path = tmp_path / "tiny.pt"
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(state, path)
    encoder = VISION_ENCODERS.create("open_clip:align-tiny-clip", pretrained=str(path))
    assert encoder.visual is not model.visual
    torch.testing.assert_close(encoder.visual.proj, state["visual.proj"])
    x = _pixels(encoder)
    with torch.no_grad():
        loaded = load_open_clip("align-tiny-clip", str(path))[0]
        torch.testing.assert_close(encoder(x), loaded.encode_image(x))
    normed = VISION_ENCODERS.create("open_clip:align-tiny-clip", normalize=True)
    with torch.no_grad():
        torch.testing.assert_close(normed(x).norm(dim=-1), torch.ones(BATCH))


def test_open_clip_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="missing.pt"):
        VISION_ENCODERS.create("open_clip:align-tiny-clip", pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(AssetMissingError, match="download=True"):  # a tag that is not cached: no download
        VISION_ENCODERS.create("open_clip:RN50.openai", cache_dir=str(tmp_path))


def test_open_clip_tags_resolve_to_cached_files_only(tmp_path: Path) -> None:
    from align.encoders.open_clip_models import _cached_tag_file

    snapshot = tmp_path / "models--org--clip" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (tmp_path / "models--org--clip" / "refs").mkdir()
    (tmp_path / "models--org--clip" / "refs" / "main").write_text("0" * 40)
    hub = {"hf_hub": "org/clip/"}
    assert _cached_tag_file(hub, str(tmp_path)) is None
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"x")
    assert _cached_tag_file(hub, str(tmp_path)).endswith("open_clip_pytorch_model.bin")
    (snapshot / "open_clip_model.safetensors").write_bytes(b"x")  # preferred, as open_clip does
    assert _cached_tag_file(hub, str(tmp_path)).endswith("open_clip_model.safetensors")
    url = {"url": "https://example.org/weights/abc123.pt"}
    assert _cached_tag_file(url, str(tmp_path)) is None
    (tmp_path / "abc123.pt").write_bytes(b"x")
    assert _cached_tag_file(url, str(tmp_path)) == str(tmp_path / "abc123.pt")


def test_hf_pooler_and_missing_pooler(tmp_path: Path, tiny_hf_dir: Path, build) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    encoder = build("hf:<tiny>")
    x = _pixels(encoder)
    with torch.no_grad():
        out = encoder.model(pixel_values=x)
        pooled, tokens = encoder.encode(x)
    torch.testing.assert_close(pooled, out.pooler_output)
    torch.testing.assert_close(tokens, out.last_hidden_state[:, 1:])  # CLS dropped
    assert tokens.shape[1] == 16

    folder = tmp_path / "no-pooler"
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    bare = VISION_ENCODERS.create(f"hf:{folder}")
    assert not bare.use_pooler  # an untrained pooler would be random: use the CLS token
    with torch.no_grad():
        torch.testing.assert_close(bare(x), bare.model(pixel_values=x).last_hidden_state[:, 0])


def test_hf_missing_model_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does-not-exist"):
        VISION_ENCODERS.create(f"hf:{tmp_path / 'does-not-exist'}")
    with pytest.raises(AssetMissingError, match="align-test/not-cached"):
        VISION_ENCODERS.create("hf:align-test/not-cached", cache_dir=str(tmp_path))


def test_torchvision_without_the_asset_names_the_pull_command(isolated_home: Path) -> None:
    with pytest.raises(AssetMissingError, match="align assets pull mobilenet_v2.imagenet1k_v1"):
        VISION_ENCODERS.create("torchvision:mobilenet_v2.imagenet1k_v1")
    with pytest.raises(AssetMissingError, match="align assets pull efficientnet_lite0.imagenet"):
        VISION_ENCODERS.create("efficientnet_lite:lite0.imagenet")


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "suggestion"), [
    ("toy:cnnn", "toy:cnn"),
    ("timm:vit_smal_patch16_224", "vit_small_patch16_224"),
    ("timm:resnet18.a1_in1kk", "a1_in1k"),
    ("open_clip:ViT-B-3", "ViT-B-32"),
    ("open_clip:ViT-B-32.laion2b_s34b_b78k", "laion2b_s34b_b79k"),
])
def test_unknown_names_suggest_close_matches(name: str, suggestion: str) -> None:
    with pytest.raises(UnknownNameError) as info:
        VISION_ENCODERS.create(name)
    message = str(info.value)
    assert "\n" not in message and suggestion in message


def test_importing_align_does_not_import_model_libraries() -> None:
    code = ("import sys, align.encoders; from align.registry import VISION_ENCODERS as V; V.list();"
            "print(sorted(m for m in ('timm', 'open_clip', 'transformers', 'efficientnet_lite_pytorch')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
