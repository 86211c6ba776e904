"""``precision: auto``: bfloat16 where the computing device has native bfloat16 units, float32
elsewhere, resolved once when the config is read, printed, and carried by every encoder name (so by
every identity and result) exactly as an explicit precision would be. The capability is mocked: a
fake ``/proc/cpuinfo`` and a fake CUDA, never this machine's."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from align import precision
from align.bench.execute.features import FeatureBank
from align.bench.plan.config import load_config
from align.bench.runner import run_benchmark
from align.errors import BadInputError
from align.features.cache import FeatureCache
from align.precision import auto_precision, native_bfloat16, resolve_precision, with_precision
import tests.unit.test_bench  # noqa: F401  (registers the test-colours dataset)

X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx2 avx512f avx512bw {extra}\n\n" \
      "processor\t: 1\nflags\t\t: fpu sse sse2 avx2 avx512f avx512bw {extra}\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes sve {extra}\nCPU implementer\t: 0x41\n"

CONFIG = """
name: toy
precision: {precision}
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge]
datasets:
  - {{name: test-colours, fit: train, eval: test, tasks: [zeroshot_classification]}}
"""


@pytest.fixture
def cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the flag reader at a fake /proc/cpuinfo with the given text (None: no such file), with
    no CUDA unless a test mocks one."""
    def fake(text: str | None) -> Path:
        path = tmp_path / "cpuinfo"
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(precision, "CPUINFO", path)
        return path
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return fake


def fake_cuda(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], name: str = "Fake GPU") -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: capability >= (8, 0)
                        or including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)


def config_with(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG.format(precision=value))
    return path


@pytest.mark.parametrize("text,reason", [(X86.format(extra="avx512_bf16 avx512_vnni"), "x86 avx512_bf16"),
                                         (X86.format(extra="amx_tile amx_bf16 amx_int8 avx512_bf16"), "x86 amx_bf16"),
                                         (ARM.format(extra="i8mm bf16"), "arm bf16")])
def test_native_units_choose_bfloat16(cpuinfo, text: str, reason: str) -> None:
    cpuinfo(text)
    assert native_bfloat16() == reason
    assert auto_precision() == ("bfloat16", reason)
    assert resolve_precision("auto") == "bfloat16"
    assert with_precision("toy:cnn", "auto") == "toy:cnn@bfloat16"


@pytest.mark.parametrize("text", [X86.format(extra="avx512_vnni"),
                                  ARM.format(extra="i8mm"),
                                  "processor\t: 0\nflags\t\t: fpu sse\nFeatures\t: bf16x\n",  # no whole-word match
                                  "Features\t: fp asimd\nflags\t\t: bf16\n",  # "bf16" counts on Arm's line only
                                  ""])
def test_no_native_units_choose_float32(cpuinfo, text: str) -> None:
    cpuinfo(text)
    assert native_bfloat16() is None
    assert auto_precision()[0] == "float32"
    assert with_precision("toy:cnn", "auto") == "toy:cnn"  # float32 names never move


def test_unreadable_cpuinfo_is_float32(cpuinfo) -> None:
    cpuinfo(None)  # no such file (not Linux)
    assert native_bfloat16() is None and resolve_precision("auto") == "float32"
    directory = cpuinfo(None)
    directory.mkdir()  # exists but cannot be read as a file
    assert native_bfloat16() is None and resolve_precision("auto") == "float32"


def test_cuda_is_asked_only_for_cuda_or_the_whole_machine(cpuinfo, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo(X86.format(extra="avx512_vnni"))
    fake_cuda(monkeypatch, (8, 0), "NVIDIA A100")
    assert native_bfloat16("cuda") == "CUDA NVIDIA A100 (compute capability 8.0 >= 8.0)"
    assert native_bfloat16("cuda:0") == native_bfloat16(None) == native_bfloat16("cuda")
    # encoders compute on the CPU: a GPU does not make the CPU's bfloat16 fast
    assert native_bfloat16("cpu") is None and resolve_precision("auto") == "float32"
    fake_cuda(monkeypatch, (7, 0), "Tesla V100")  # is_bf16_supported() says True there (emulated)
    assert native_bfloat16("cuda") is None and auto_precision("cuda")[0] == "float32"
    assert native_bfloat16("mps") is None


def test_cuda_is_not_touched_without_it(cpuinfo, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo("")

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("CUDA asked about although it is not available")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", boom)
    monkeypatch.setattr(torch.cuda, "get_device_capability", boom)
    assert native_bfloat16(None) is None and native_bfloat16("cuda") is None


def test_auto_config_with_units_names_every_encoder_bfloat16(cpuinfo, tmp_path: Path, capsys) -> None:
    cpuinfo(X86.format(extra="avx512_bf16"))
    config = load_config(config_with(tmp_path, "auto"))
    assert config.image_encoders == ("toy:cnn@bfloat16",) and config.text_encoders == ("toy:text@bfloat16",)
    assert config.raw["precision"] == "bfloat16"  # the config results record says what ran
    explicit = load_config(config_with(tmp_path, "bfloat16"))
    assert (config.image_encoders, config.text_encoders) == (explicit.image_encoders, explicit.text_encoders)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision auto -> bfloat16 (x86 avx512_bf16)" in err[0]


def test_auto_config_without_units_keeps_float32_names(cpuinfo, tmp_path: Path, capsys) -> None:
    cpuinfo(X86.format(extra=""))
    config = load_config(config_with(tmp_path, "auto"))
    assert config.image_encoders == ("toy:cnn",) and config.text_encoders == ("toy:text",)
    assert config.raw["precision"] == "float32"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision auto -> float32 (no native bfloat16 units on cpu)" in err[0]


def test_auto_is_resolved_once_when_the_config_is_read(cpuinfo, tmp_path: Path) -> None:
    """Results follow the config's resolved names, whatever the flags say after it was read."""
    cpuinfo(X86.format(extra="avx512_bf16"))
    config = load_config(config_with(tmp_path, "auto"))
    cpuinfo(X86.format(extra=""))  # the capability "changes" after reading: nothing moves
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    assert run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda _: None).written == 1
    (path,) = (tmp_path / "results").rglob("*zeroshot_classification*.json")
    record = json.loads(path.read_text())
    assert record["pretrained"] == "toy:cnn@bfloat16+toy:text@bfloat16"
    assert record["config"]["precision"] == "bfloat16"


def test_auto_is_never_the_default(cpuinfo, tmp_path: Path) -> None:
    cpuinfo(X86.format(extra="amx_bf16 avx512_bf16"))
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG.format(precision="float32").replace("precision: float32\n", ""))
    assert load_config(path).image_encoders == ("toy:cnn",)
    default = load_config(Path(__file__).resolve().parents[2] / "configs" / "bench" / "default.yaml")
    assert default.raw.get("precision", "float32") == "float32"
    assert not any("@" in name for name in (*default.image_encoders, *default.text_encoders))


@pytest.mark.parametrize("call", [lambda: precision.split_precision("toy:cnn@auto"),
                                  lambda: resolve_precision("automatic")])
def test_auto_is_not_a_name_and_typos_are_refused(call: object) -> None:
    with pytest.raises(BadInputError) as err:
        call()  # type: ignore[operator]
    assert "\n" not in str(err.value) and "auto" in str(err.value)


def test_bad_precision_key_lists_auto(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as err:
        load_config(config_with(tmp_path, "bf16"))
    assert "precision" in str(err.value) and "auto" in str(err.value)


def test_capability_mock_really_steers_the_choice(cpuinfo) -> None:
    """The fixture is not vacuous: the same call answers both ways as the fake flags change."""
    answers = SimpleNamespace()
    cpuinfo(X86.format(extra="avx512_bf16"))
    answers.on = resolve_precision("auto")
    cpuinfo(X86.format(extra="avx512_vnni"))
    answers.off = resolve_precision("auto")
    assert (answers.on, answers.off) == ("bfloat16", "float32")


@pytest.mark.parametrize("extra,encoder", [("avx512_bf16", "toy:cnn@bfloat16"), ("avx512_vnni", "toy:cnn")])
def test_embed_accepts_auto_and_records_what_it_chose(cpuinfo, tmp_path: Path, capsys, extra: str,
                                                      encoder: str) -> None:
    from align.cli import main
    from tests.unit.test_cli import make_images

    cpuinfo(X86.format(extra=extra))
    make_images(tmp_path / "imgs")
    out = tmp_path / "feats.safetensors"
    assert main(["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "-o", str(out), "--precision", "auto"]) == 0
    assert json.loads(out.with_name(out.name + ".json").read_text())["encoder"] == encoder
    said = "bfloat16 (x86 avx512_bf16)" if extra == "avx512_bf16" else "float32 (no native bfloat16 units on cpu)"
    assert f"align embed: precision auto -> {said}" in capsys.readouterr().err
