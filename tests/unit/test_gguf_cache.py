"""The converted-model cache behind GGUF tables: saved once complete, reloaded equal, never half-read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from align.text.gguf_table import converted_dir, load_or_convert


def _tiny_lm() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    return LlamaForCausalLM(config).eval()


def _load(folder: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()


def test_converts_once_then_loads_the_same_weights(tmp_path: Path) -> None:
    calls = []

    def convert() -> torch.nn.Module:
        calls.append(1)
        return _tiny_lm()

    first = load_or_convert(tmp_path / "lm", convert, _load)
    second = load_or_convert(tmp_path / "lm", convert, _load)
    assert len(calls) == 1 and (tmp_path / "lm" / ".complete").is_file()
    ids = torch.tensor([[1, 5, 9]])
    with torch.no_grad():
        assert torch.equal(first(ids).logits, second(ids).logits)


def test_an_unfinished_folder_is_converted_again(tmp_path: Path) -> None:
    (tmp_path / "lm").mkdir()  # e.g. a save cut off before its .complete marker
    calls = []
    load_or_convert(tmp_path / "lm", lambda: calls.append(1) or _tiny_lm(), _load)
    assert calls == [1]


@pytest.mark.parametrize("error", [OSError("read-only"), ValueError("not serializable")])
def test_unwritable_cache_still_returns_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  error: Exception) -> None:
    model = _tiny_lm()
    monkeypatch.setattr(type(model), "save_pretrained", lambda self, *a, **k: (_ for _ in ()).throw(error))
    assert load_or_convert(tmp_path / "lm", lambda: model, _load) is model
    assert not list(tmp_path.iterdir())  # no partial folder left behind


def test_folder_changes_when_the_file_is_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_HOME", str(tmp_path / "home"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"a")
    before = converted_dir(gguf)
    gguf.write_bytes(b"ab")
    assert converted_dir(gguf) != before and before.parent == tmp_path / "home" / "gguf" / "converted"


def test_a_damaged_conversion_is_converted_again(tmp_path: Path) -> None:
    load_or_convert(tmp_path / "lm", _tiny_lm, _load)
    weights = next((tmp_path / "lm").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    calls = []
    load_or_convert(tmp_path / "lm", lambda: calls.append(1) or _tiny_lm(), _load)
    assert calls == [1]
    load_or_convert(tmp_path / "lm", lambda: calls.append(1) or _tiny_lm(), _load)
    assert calls == [1]  # the fresh conversion verifies


def test_a_file_dropped_into_a_conversion_is_never_loaded(tmp_path: Path) -> None:
    load_or_convert(tmp_path / "lm", _tiny_lm, _load)
    (tmp_path / "lm" / "pytorch_model.bin").write_bytes(b"anything at all")
    calls = []
    load_or_convert(tmp_path / "lm", lambda: calls.append(1) or _tiny_lm(), _load)
    assert calls == [1] and not (tmp_path / "lm" / "pytorch_model.bin").exists()
