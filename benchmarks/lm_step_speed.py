"""Seconds per training step through the frozen Gemma-3 270M, float32: this tree against a reference
commit (default b19147a), timed back to back in one run on one machine, and where the time goes.

Two worker processes, one per tree (the reference's ``align/`` extracted by ``git archive`` and put
first on ``PYTHONPATH``), each load the LM once; the driver then asks them for steps in turn
(reference, this tree, reference, ...), so both see the same load on the machine. Steps:

- **VLAP**: the full loss (``L_cap`` + 10 ``L_map``) forward and backward on 64 emoji image-name pairs,
  4 visual prefix tokens from MobileNetV2's grid, the same calibrated ``g`` in both trees; the two
  trees' losses and ``g``'s gradients are compared.
- **LQAE**: the LQAE study's setting (Gemma's 8192 most frequent whole words as the codebook, 16
  tokens per 32 px image, batch 32, augmentation on); random images, seed 0.

One more step of each, under ``torch.profiler``, splits the time by component: the output layer's
matrix products (any operand with a vocabulary-sized dimension), the other matrix products (the LM's
body, ``g``, LQAE's encoder and decoder), attention, softmax and cross-entropy, element-wise work and
norms, and memory (copies, concatenation, fills, indexing).

    python benchmarks/lm_step_speed.py [--against b19147a] [--steps 3] [--methods vlap,lqae] [--threads N]
                                       [--output results/lm_step_speed.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import emit, machine_line, markdown_table, write_atomic  # benchmarks/_common.py

ROOT = Path(__file__).resolve().parents[1]
GEMMA = "gguf:gemma-3-270m.q4_k_m"
ENCODER = "torchvision:mobilenet_v2.imagenet1k_v1"
COMPONENTS = ("output layer matmuls", "other matmuls", "attention", "softmax + cross-entropy",
              "element-wise + norms", "memory", "other")
VOCAB_DIM = 100_000  # an operand dimension at least this large is the LM's output layer
THREADS_VARIABLE = "LM_STEP_SPEED_THREADS"  # the driver's --threads, for its workers


# ---------------------------------------------------------------------------------------- worker side

def component(name: str, shapes: list[Any]) -> str:
    """The component a profiled aten op belongs to (see the module docstring)."""
    op = name.removeprefix("aten::")
    if op in ("mm", "addmm", "bmm", "matmul", "linear", "baddbmm"):
        big = any(isinstance(s, list) and any(isinstance(d, int) and d >= VOCAB_DIM for d in s) for s in shapes)
        return COMPONENTS[0] if big else COMPONENTS[1]
    if "attention" in op:
        return COMPONENTS[2]
    if any(k in op for k in ("softmax", "logsumexp", "nll", "cross_entropy", "exp")):
        return COMPONENTS[3]
    if any(k in op for k in ("copy", "cat", "fill", "index", "zero", "clone", "empty", "scatter", "gather",
                             "contiguous", "to_copy", "stack", "masked")):
        return COMPONENTS[5]
    if any(k in op for k in ("mul", "add", "sub", "div", "pow", "gelu", "tanh", "rsqrt", "sqrt", "mean",
                             "sum", "neg", "sin", "cos", "norm", "where", "clamp", "max", "min", "abs")):
        return COMPONENTS[4]
    return COMPONENTS[6]


def profile_components(run_step: Any) -> dict[str, float]:
    """Milliseconds of self CPU time per component in one step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run_step()
    totals = dict.fromkeys(COMPONENTS, 0.0)
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key.startswith("aten::"):
            totals[component(event.key, list(event.input_shapes or []))] += event.self_cpu_time_total / 1000
    return totals


def build_vlap(inputs: Path) -> Any:
    import torch
    from safetensors.torch import load_file

    from align.methods.vlap.aligner import VLAPCore, load_table, tokenize_captions

    data = load_file(str(inputs))
    captions = json.loads((inputs.with_suffix(".json")).read_text())
    table = load_table(GEMMA)
    ids, mask = tokenize_captions(table, captions, 64)
    table.load_lm()
    torch.manual_seed(0)
    core = VLAPCore(data["tokens"].shape[-1], GEMMA, prefix_source="grid", num_prefix_tokens=4,
                    prior="uniform", vocab_subset=2000)
    core.calibrate(data["tokens"])

    def step() -> dict[str, Any]:
        core.zero_grad(set_to_none=True)
        loss = core(data["tokens"], ids, mask)
        loss.backward()
        return {"loss": float(loss.detach()), "grad": core.g.weight.grad.flatten()[:4096].tolist()}

    def exact() -> dict[str, Any]:
        """``L_cap`` as this tree computes it, and in float64 from the same hidden states (padded batch)."""
        with torch.no_grad():
            lm = core.lm()
            context = core._context(lm, core.project(data["tokens"]))
            inputs = torch.cat([context, lm.get_input_embeddings()(ids)], dim=1)
            attention = torch.cat([mask.new_ones(context.shape[:2]), mask], dim=1)
            hidden = lm.base_model(inputs_embeds=inputs, attention_mask=attention).last_hidden_state
            h = hidden[:, context.shape[1] - 1:-1][mask.bool()].double()
            weight = lm.get_output_embeddings().weight.double()
            exact = torch.nn.functional.cross_entropy(h @ weight.T, ids[mask.bool()])
            l_cap = core.caption_loss(core.project(data["tokens"]), ids, mask)
            return {"l_cap": float(l_cap), "l_cap_float64": float(exact)}
    step.exact = exact  # type: ignore[attr-defined]
    return step


def build_lqae() -> Any:
    import torch

    from align.methods.lqae.aligner import LQAECore

    torch.manual_seed(0)
    core = LQAECore(GEMMA, codebook_rows="words", codebook_size=8192, in_chans=1, augment=True).train()
    images = torch.rand(32, 1, 32, 32, generator=torch.Generator().manual_seed(0))

    def step() -> dict[str, Any]:
        core.zero_grad(set_to_none=True)
        loss = core(images)
        loss.backward()
        return {"loss": float(loss.detach())}
    return step


def worker(inputs: Path) -> None:
    """Answer the driver's requests, one JSON line each: ``build M``, ``step M``, ``profile M``."""
    import time

    import torch

    import align

    torch.set_num_threads(int(os.environ.get(THREADS_VARIABLE) or torch.get_num_threads()))
    steps: dict[str, Any] = {}
    print(json.dumps({"align": align.__file__}), flush=True)
    for line in sys.stdin:
        verb, method = line.split()
        started = time.perf_counter()
        if verb == "build":
            steps[method] = build_vlap(inputs) if method == "vlap" else build_lqae()
            reply: dict[str, Any] = {}
        elif verb == "step":
            reply = steps[method]()
        elif verb == "exact":
            reply = steps[method].exact()
        else:
            reply = {"components": profile_components(steps[method])}
        reply["seconds"] = time.perf_counter() - started
        print(json.dumps(reply), flush=True)


# ---------------------------------------------------------------------------------------- driver side

class Worker:
    """One tree's worker process."""

    def __init__(self, tree: Path | None, inputs: Path, threads: int) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(tree)] * (tree is not None) + [str(ROOT / "benchmarks")]), **{THREADS_VARIABLE: str(threads or "")})
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", str(inputs)], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.origin = self._read()["align"]

    def _read(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"lm_step_speed: a worker stopped (exit {self.process.wait()})")
        return json.loads(line)

    def ask(self, verb: str, method: str) -> dict[str, Any]:
        self.process.stdin.write(f"{verb} {method}\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def write_inputs(folder: Path, batch: int) -> Path:
    """The VLAP batch both workers read: MobileNetV2 grid tokens of the first emoji anchors, their names."""
    from safetensors.torch import save_file

    from align.bench.execute.features import FeatureBank
    from align.registry import DATASETS

    split = DATASETS.create("emoji").load("anchors")
    tokens = FeatureBank(progress=False).tokens(ENCODER, split)[:batch].float().contiguous()
    path = folder / "vlap_inputs.safetensors"
    save_file({"tokens": tokens}, str(path))
    write_atomic(path.with_suffix(".json"), json.dumps([c[0] for c in split.captions][:batch]))
    return path


def extract(rev: str, folder: Path) -> Path:
    """``rev``'s ``align/`` package under ``folder``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "align"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def compare(method: str, ref: list[dict[str, Any]], new: list[dict[str, Any]]) -> str:
    """How the two trees' losses (and VLAP's gradients of ``g``) agree on the same batch."""
    loss_ref, loss_new = ref[-1]["loss"], new[-1]["loss"]
    text = f"{method}: loss {loss_ref:.6f} (reference) vs {loss_new:.6f}, relative difference " \
           f"{abs(loss_new - loss_ref) / abs(loss_ref):.1e}"
    if "grad" in ref[-1]:
        a, b = ref[-1]["grad"], new[-1]["grad"]
        gap = sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5 / sum(x * x for x in a) ** 0.5
        text += f"; gradient of g (first {len(a)} entries) relative difference {gap:.1e}"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="b19147a", help="the reference commit")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per tree and method (after a warm-up)")
    parser.add_argument("--methods", default="vlap,lqae")
    parser.add_argument("--batch", type=int, default=64, help="VLAP pairs per step")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    parser.add_argument("--output", type=Path, default=Path("results/lm_step_speed.md"))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory(prefix="lm-step-speed-") as tmp:
        inputs = write_inputs(Path(tmp), args.batch)
        trees = {"reference": Worker(extract(args.against, Path(tmp)), inputs, args.threads),
                 "this tree": Worker(None, inputs, args.threads)}
        if not trees["reference"].origin.startswith(tmp):
            raise SystemExit(f"lm_step_speed: the reference worker imported {trees['reference'].origin}")
        rows, parts, notes = [], {}, []
        for method in methods:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
            for name, w in trees.items():
                w.ask("build", method)
                w.ask("step", method)  # warm-up
            for _ in range(args.steps):
                for name, w in trees.items():
                    runs[name].append(w.ask("step", method))
            for name, w in trees.items():
                parts[(method, name)] = w.ask("profile", method)["components"]
                if method == "vlap":
                    exact = w.ask("exact", method)
                    notes.append(f"vlap L_cap, {name}: {exact['l_cap']:.7f}, float64 head on the same hidden states "
                                 f"{exact['l_cap_float64']:.7f} (relative error "
                                 f"{abs(exact['l_cap'] - exact['l_cap_float64']) / exact['l_cap_float64']:.1e})")
            seconds = {name: statistics.median(r["seconds"] for r in runs[name]) for name in trees}
            rows.append((method, seconds["reference"], seconds["this tree"],
                         seconds["reference"] / seconds["this tree"]))
            notes.append(compare(method, runs["reference"], runs["this tree"]))
        for w in trees.values():
            w.close()
    component_rows = [(c, *(parts[(m, n)][c] for m in methods for n in trees)) for c in COMPONENTS]
    component_rows.append(("total (profiled step)", *(sum(parts[(m, n)].values()) for m in methods for n in trees)))
    threads = f"{args.threads} torch thread(s)" if args.threads else "torch's default threads"
    lines = [(f"Frozen Gemma-3 270M training steps, float32, median of {args.steps} steps after a warm-up, "
              f"reference = {args.against} (interleaved, one run, {threads} per worker):"), "",
             *markdown_table(("method", f"s / step at {args.against}", "s / step now", "speed-up"), rows,
                             formats=("", ".2f", ".2f", ".2f")),
             "", *[f"- {n}" for n in notes], "",
             "Milliseconds of one profiled step by component (self CPU time of the aten ops):", "",
             *markdown_table(("component", *(f"{m} {'before' if n == 'reference' else 'after'}"
                                             for m in methods for n in trees)),
                             component_rows, formats=("", *(".0f",) * (2 * len(methods)))),
             "", machine_line()]
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
