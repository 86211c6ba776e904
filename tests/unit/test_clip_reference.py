"""The pretrained-CLIP reference row: the ``clip`` aligner (CLIP's own space, nothing fitted), the bench
running it on its own two towers only, and ``optional: true`` skipping it in one line where the weights
are not on the machine. The model is align's 32-d test CLIP given a pretrained tag whose "checkpoint" a
test writes (or leaves out) under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_bench  # noqa: F401  (registers the test-colours dataset)
import torch

from align.bench.execute.features import FeatureBank
from align.bench.plan.config import load_config
from align.bench.runner import run_benchmark
from align.cli import main
from align.errors import BadInputError
from align.features.cache import FeatureCache
from align.registry import ALIGNERS

pytestmark = pytest.mark.usefixtures("isolated_home")

CONFIG = """
name: reference
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners:
  - ridge
  - {{name: clip, hparams: {{model: "align-tiny-clip.{tag}"}}, optional: {optional}}}
datasets:
  - {{name: test-colours, fit: train, eval: test, tasks: [zeroshot_classification, zeroshot_retrieval]}}
"""


def tiny_tag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tag: str, *, present: bool) -> Path:
    """Give the 32-d test CLIP a pretrained tag whose weights file is ``tmp_path/<tag>.pt`` (written if
    ``present``). Each test uses its own tag: open_clip models are cached per name."""
    import open_clip

    from align.encoders.open_clip_models import _add_configs

    _add_configs()
    checkpoint = tmp_path / f"{tag}.pt"
    if present:
        torch.manual_seed(0)
        torch.save(open_clip.create_model("align-tiny-clip").state_dict(), checkpoint)
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "align-tiny-clip", {tag: {"file": str(checkpoint)}})
    return checkpoint


def write(tmp_path: Path, tag: str, optional: str = "true") -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG.format(tag=tag, optional=optional))
    return path


def test_clip_space_is_the_model_s_own_normalised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny_tag(monkeypatch, tmp_path, "unit", present=False)  # the aligner itself reads no weights
    aligner = ALIGNERS.create("clip", model="align-tiny-clip.unit").fit()
    assert aligner.own_encoders == ("open_clip:align-tiny-clip.unit",) * 2 and not aligner.fits_on_pairs
    x = torch.randn(5, 32) * 7
    assert torch.allclose(aligner.encode_image(x), x / x.norm(dim=1, keepdim=True))
    assert torch.allclose(aligner.encode_text(x).norm(dim=1), torch.ones(5))
    with pytest.raises(BadInputError, match="dimension 16, the aligner expects 32"):
        aligner.encode_text(torch.randn(2, 16))


def test_clip_refuses_other_encoders_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny_tag(monkeypatch, tmp_path, "pair", present=False)
    aligner = ALIGNERS.create("clip", model="align-tiny-clip.pair")
    aligner.check_encoders("open_clip:align-tiny-clip.pair@bfloat16", "open_clip:align-tiny-clip.pair")
    for image, text in [("toy:cnn", "open_clip:align-tiny-clip.pair"), ("open_clip:align-tiny-clip.pair", "toy:text"),
                        ("open_clip:ViT-B-32.openai", "open_clip:ViT-B-32.openai")]:
        with pytest.raises(BadInputError) as err:
            aligner.check_encoders(image, text)
        assert "\n" not in str(err.value) and "compares its own encoders only" in str(err.value)
        assert repr(image) in str(err.value) and repr(text) in str(err.value)


@pytest.mark.parametrize("model,why", [("ViT-B-32", "must name a pretrained tag"),
                                       ("ViT-B-32.opena", "did you mean openai"),
                                       ("ViT-Q-99.openai", "unknown open_clip model")])
def test_clip_model_is_checked_when_built(model: str, why: str) -> None:
    with pytest.raises(BadInputError, match=why):
        ALIGNERS.create("clip", model=model)


def test_a_saved_clip_reference_reloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from align.methods.framework.base import load_aligner

    tiny_tag(monkeypatch, tmp_path, "saved", present=False)
    ALIGNERS.create("clip", model="align-tiny-clip.saved").fit().save(tmp_path / "clip")
    loaded = load_aligner(tmp_path / "clip")
    assert loaded.hparams == {"model": "align-tiny-clip.saved"} and loaded.image_dim == 32


@pytest.mark.parametrize("entry,problem", [
    ("{name: clip, optional: yes please}", "aligners[0].optional: expected true or false"),
    ("{name: ridge, optional: true}", "aligners[0].optional: ridge runs on the config's encoders"),
    ("{name: clip, hparams: {model: ViT-B-32}, optional: true}", "aligners[0].hparams: clip(model='ViT-B-32')"),
])
def test_optional_is_checked_with_the_config(tmp_path: Path, entry: str, problem: str) -> None:
    head, datasets = CONFIG.format(tag="t", optional="true").split("aligners:")[0], CONFIG.split("datasets:")[1]
    path = tmp_path / "bench.yaml"
    path.write_text(f"{head}aligners:\n  - {entry}\ndatasets:{datasets.format()}")
    with pytest.raises(BadInputError) as err:
        load_config(path)
    assert "\n" not in str(err.value) and problem in str(err.value)


def test_missing_weights_skip_the_row_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    checkpoint = tiny_tag(monkeypatch, tmp_path, "absent", present=False)
    lines: list[str] = []
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    summary = run_benchmark(load_config(write(tmp_path, "absent")), tmp_path / "results", bank=bank, echo=lines.append)
    skipped = [line for line in lines if line.startswith("skipped:")]
    assert len(skipped) == 1 and skipped[0].startswith(
        "skipped: clip (optional, on its own encoders open_clip:align-tiny-clip.absent): "
        "open_clip align-tiny-clip/absent: weights not found under ")
    assert str(checkpoint) in skipped[0] and "put the checkpoint there" in skipped[0]
    assert summary.written == 2  # ridge's two tasks: everything else still runs
    assert {json.loads(p.read_text())["hparams"] == {} or "alpha" in json.loads(p.read_text())["hparams"]
            for p in (tmp_path / "results").rglob("*.json")} == {True}


def test_cli_skips_the_row_and_exits_0(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    tiny_tag(monkeypatch, tmp_path, "cli", present=False)
    argv = ["bench", "--config", str(write(tmp_path, "cli")), "--results", str(tmp_path / "results"), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert sum(line.startswith("skipped: clip (optional") for line in out.out.splitlines()) == 1


def test_without_optional_missing_weights_are_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    tiny_tag(monkeypatch, tmp_path, "needed", present=False)
    argv = ["bench", "--config", str(write(tmp_path, "needed", "false")), "--results", str(tmp_path / "results"),
            "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "weights not found under" in err


def test_present_weights_score_the_row_on_its_own_towers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    checkpoint = tiny_tag(monkeypatch, tmp_path, "here", present=True)
    lines: list[str] = []
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    summary = run_benchmark(load_config(write(tmp_path, "here")), tmp_path / "results", bank=bank, echo=lines.append)
    assert not any(line.startswith("skipped:") for line in lines)
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "results").rglob("*.json"))]
    pairs = {(r["aligner"], r["pretrained"]) for r in records}
    clip = "open_clip:align-tiny-clip.here"
    assert pairs == {("ridge", "toy:cnn+toy:text"), ("clip", f"{clip}+{clip}")}  # each on its own encoders only
    assert summary.written == 4
    for record in (r for r in records if r["aligner"] == "clip"):
        assert record["metrics"] and all(0 <= v <= 1 for v in record["metrics"].values())
    from align.assets.hashing import file_sha256

    assert bank.encoder("image", clip).weights_sha256 == file_sha256(checkpoint)  # the checkpoint, not random init
    for record in (r for r in records if r["aligner"] == "clip"):  # and results name it, so a new one recomputes
        assert record["weights_sha256"] == {"image": file_sha256(checkpoint), "text": file_sha256(checkpoint)}
    own = tmp_path / "features" / "open_clip__align-tiny-clip.here" / "test-colours"
    assert {p.name for p in own.iterdir()} == {"test", "test__captions", "test__prompts-main"}  # nothing of train


@pytest.mark.parametrize("name", ["coco", "flickr30k", "imagenet1k", "cifar10", "cifar100"])
def test_standard_configs_skip_the_reference_without_weights(name: str, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """The shipped configs' reference row, with open_clip's caches pointed at empty folders: one line naming
    where the ViT-B-32/openai checkpoint was looked for, and the row is left out."""
    import huggingface_hub.constants

    from align.bench.execute.optional import available
    from align.bench.plan.units import aligner_plans
    from align.encoders.open_clip_models import _load_open_clip

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _load_open_clip.cache_clear()  # a model loaded earlier in this process would hide the missing files
    plans, _ = aligner_plans(load_config(f"configs/bench/{name}.yaml"))
    clip = "open_clip:ViT-B-32.openai"
    assert [(p.spec.name, p.image_side, p.text_side, p.spec.optional) for p in plans if p.spec.optional] == [
        ("clip", clip, clip, True)]
    lines: list[str] = []
    kept = available(plans, FeatureBank(FeatureCache(tmp_path / "features"), progress=False), lines.append)
    assert [p.spec.name for p in kept] == [p.spec.name for p in plans if not p.spec.optional]
    assert len(lines) == 1 and "\n" not in lines[0]
    hub = tmp_path / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    assert lines[0] == (f"skipped: clip (optional, on its own encoders {clip}): open_clip ViT-B-32/openai: weights "
                        f"not found under {hub} or {tmp_path / 'home' / '.cache' / 'clip' / 'ViT-B-32.pt'}; put the "
                        "checkpoint there or set HF_HUB_CACHE to the cache that holds it (from Python: download=True, "
                        "or pretrained=<local file>)")
