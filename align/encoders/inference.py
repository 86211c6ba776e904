"""The copy of a frozen float32 conv-net encoder that computes features on the CPU: every BatchNorm
folded into the convolution before it, activations in place where nothing else reads their input,
weights and inputs in channels-last memory format.

Why: in eval mode a BatchNorm after a convolution is a per-channel affine map that costs one more
pass over the activations; folded into the conv's weights and bias it costs nothing. oneDNN's conv
kernels want channels-last (NHWC) and reorder NCHW tensors at every layer. An out-of-place ReLU6
allocates a fresh activation map, and at these sizes every fresh one is page-faulted in.
``benchmarks/image_path_speed.py`` measures what this gives end to end.

What may be folded is read from the traced graphs (``torch.fx``) of the encoder's ``encode`` and
``forward_tokens``: a ``BatchNorm2d`` is folded only into a conv whose output feeds nothing else, and
an activation runs in place only where its input is a fresh conv or BatchNorm output read by nothing
else, in both graphs. The copy is then checked against the encoder on a probe batch; a copy that
fails or differs is not used (logged once) and the encoder computes its features itself.

The copy lives outside the encoder (``state_dict``, ``parameters()``, the weights' sha256 and every
feature-cache key are the encoder's own, untouched), is built on first use and rebuilt when a weight
changes. Only frozen float32 encoders on the CPU that hold a ``BatchNorm2d`` get one, and only where
features are computed without gradients (:meth:`VisionEncoder.encode_images`, the feature cache,
``align embed``). bfloat16 keeps its own path (:mod:`align.precision`) and numbers.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from align.precision import DEFAULT_PRECISION, precision_of

log = logging.getLogger(__name__)

TRACED_METHODS = ("encode", "forward_tokens")  # every way the feature paths call an encoder
INPLACE_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish)
PROBE_TOLERANCE = 1e-4  # relative, per item; a wrong fold is off by far more, rounding by ~1e-6
PROBE_ITEMS = 1

# encoder -> (weight state, what computes its features); weak, so a dropped encoder frees its copy
_BUILT: weakref.WeakKeyDictionary[nn.Module, tuple[Hashable, nn.Module]] = weakref.WeakKeyDictionary()


@dataclass
class Plan:
    """What one traced graph allows: conv path -> BatchNorm path to fold, activations to run in place."""

    folds: dict[str, str] = field(default_factory=dict)
    inplace: set[str] = field(default_factory=set)


class _LeafTracer(torch.fx.Tracer):
    """Stops at every conv and BatchNorm, subclasses included (a padded conv is still one node)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(module, qualified_name)


class _Method(nn.Module):
    """Makes ``encoder.<method>(pixels)`` a module's forward, so fx can trace it."""

    def __init__(self, encoder: nn.Module, method: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.method = method

    def forward(self, pixels: torch.Tensor) -> Any:
        return getattr(self.encoder, self.method)(pixels)


def _trace(encoder: nn.Module, method: str) -> tuple[torch.fx.Graph, dict[str, nn.Module]]:
    """The graph of ``encoder.<method>`` and the modules its nodes call, by path inside ``encoder``."""
    root = _Method(encoder, method)
    graph = _LeafTracer().trace(root)
    modules = {name.removeprefix("encoder."): module for name, module in root.named_modules()}
    for node in graph.nodes:
        if node.op == "call_module":
            node.target = str(node.target).removeprefix("encoder.")
    return graph, modules


def _module_call(node: Any, modules: dict[str, nn.Module]) -> nn.Module | None:
    return modules.get(str(node.target)) if isinstance(node, torch.fx.Node) and node.op == "call_module" else None


def _foldable(node: torch.fx.Node, modules: dict[str, nn.Module], calls: dict[str, int]) -> str | None:
    """The conv a BatchNorm node may be folded into: its only input, called once, read by nothing else."""
    bn = _module_call(node, modules)
    if type(bn) is not nn.BatchNorm2d or bn.running_mean is None or bn.running_var is None:
        return None
    if len(node.args) != 1 or node.kwargs or calls[str(node.target)] != 1:
        return None
    source = node.args[0]
    conv = _module_call(source, modules)
    if not isinstance(conv, nn.Conv2d) or len(source.users) != 1 or calls[str(source.target)] != 1:
        return None
    return str(source.target)


def _fresh_single_use(node: Any, modules: dict[str, nn.Module]) -> bool:
    """A conv's or BatchNorm's output that only one node reads (safe to overwrite there)."""
    module = _module_call(node, modules)
    return isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) and len(node.users) == 1


def plan_of(encoder: nn.Module, method: str) -> Plan:
    """What the graph of ``encoder.<method>`` allows (nothing when it cannot be traced)."""
    try:
        graph, modules = _trace(encoder, method)
    except Exception as err:  # noqa: BLE001  (any Python the tracer cannot follow: no plan, still exact)
        log.debug("%s: %s cannot be traced (%s); nothing folded", getattr(encoder, "name", "?"), method, err)
        return Plan()
    nodes = [node for node in graph.nodes if node.op == "call_module"]
    calls: dict[str, int] = {}
    for node in nodes:
        calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    plan, unsafe = Plan(), set()
    for node in nodes:
        conv = _foldable(node, modules, calls)
        if conv is not None:
            plan.folds[conv] = str(node.target)
        if isinstance(modules[str(node.target)], INPLACE_ACTIVATIONS):
            safe = len(node.args) == 1 and not node.kwargs and _fresh_single_use(node.args[0], modules)
            (plan.inplace if safe else unsafe).add(str(node.target))
    plan.inplace -= unsafe  # a shared activation must be safe at every call
    return plan


def common_plan(plans: Iterable[Plan]) -> Plan:
    """What every graph allows."""
    plans = list(plans)
    if not plans:
        return Plan()
    folds = {conv: bn for conv, bn in plans[0].folds.items() if all(p.folds.get(conv) == bn for p in plans)}
    return Plan(folds, set.intersection(*(p.inplace for p in plans)))


def fold_batchnorm(module: nn.Module, conv_name: str, bn_name: str) -> None:
    """Fold the BatchNorm ``bn_name`` into the conv ``conv_name`` (computed in float64, stored in the
    conv's dtype) and put an ``Identity`` in its place; ``module`` is changed in place."""
    conv, bn = module.get_submodule(conv_name), module.get_submodule(bn_name)
    weight, bias = fuse_conv_bn_weights(
        conv.weight.double(), None if conv.bias is None else conv.bias.double(), bn.running_mean.double(),
        bn.running_var.double(), bn.eps, None if bn.weight is None else bn.weight.double(),
        None if bn.bias is None else bn.bias.double())
    conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    module.set_submodule(bn_name, nn.Identity())


def apply_plan(module: nn.Module, plan: Plan) -> nn.Module:
    """``module`` with ``plan``'s folds and in-place activations applied (in place); returns it."""
    for conv_name, bn_name in plan.folds.items():
        fold_batchnorm(module, conv_name, bn_name)
    for name in plan.inplace:
        module.get_submodule(name).inplace = True
    return module


def inference_copy(encoder: nn.Module, plan: Plan | None = None) -> nn.Module:
    """A deep copy of ``encoder`` with BatchNorms folded, activations in place where safe (``plan``,
    by default what every traced method allows), and channels-last weights (``as_input`` then gives
    it channels-last pixels)."""
    with torch.inference_mode(False), torch.no_grad():
        fast = copy.deepcopy(encoder)
        if plan is None:
            plan = common_plan(plan_of(fast, method) for method in TRACED_METHODS)
        apply_plan(fast, plan)
        fast.to(memory_format=torch.channels_last)
    object.__setattr__(fast, "channels_last", True)
    return fast


def _relative_error(new: torch.Tensor, old: torch.Tensor) -> float:
    """Largest per-item ``|new - old| / |old|``."""
    new, old = new.flatten(1).double(), old.flatten(1).double()
    return float(((new - old).norm(dim=1) / old.norm(dim=1).clamp_min(1e-12)).max())


def probe_error(encoder: nn.Module, fast: nn.Module) -> float:
    """Largest relative difference of pooled features and tokens between ``fast`` and ``encoder`` on
    a seeded random batch at the encoder's input size."""
    size = tuple(encoder.data_config.input_size)
    pixels = torch.randn((PROBE_ITEMS, *size), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        pooled, tokens = encoder.encode(pixels)
        fast_pooled, fast_tokens = fast.encode(pixels.contiguous(memory_format=torch.channels_last))
    return max(_relative_error(fast_pooled, pooled), _relative_error(fast_tokens, tokens))


def wants_copy(encoder: Any) -> bool:
    """A frozen float32 conv net with BatchNorm, in eval mode, on the CPU: what the copy was measured on."""
    if not isinstance(encoder, nn.Module) or not getattr(encoder, "frozen", False) or encoder.training:
        return False
    if precision_of(encoder) != DEFAULT_PRECISION or not hasattr(encoder, "data_config"):
        return False
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in encoder.parameters()):
        return False
    return any(isinstance(m, nn.BatchNorm2d) for m in encoder.modules())


def _version(tensor: torch.Tensor) -> int:
    try:
        return tensor._version
    except RuntimeError:  # an inference tensor keeps no version counter
        return -1


def weight_state(encoder: nn.Module) -> Hashable:
    """Changes whenever a parameter or buffer is replaced, moved or written in place."""
    tensors = [*encoder.parameters(), *encoder.buffers()]
    return tuple((t.data_ptr(), _version(t), t.dtype, t.device) for t in tensors)


def _build(encoder: nn.Module) -> nn.Module:
    """The checked copy, or ``encoder`` itself when the copy cannot be built or differs."""
    name = getattr(encoder, "name", type(encoder).__name__)
    try:
        fast = inference_copy(encoder)
        error = probe_error(encoder, fast)
    except Exception as err:  # noqa: BLE001  (the encoder itself still computes its features)
        log.warning("%s: no folded channels-last copy (%s); features come from the encoder itself", name,
                    str(err).split("\n", 1)[0][:200] or type(err).__name__)
        return encoder
    if not error <= PROBE_TOLERANCE:
        log.warning("%s: the folded channels-last copy differs by %.1e on a probe batch; features come from "
                    "the encoder itself", name, error)
        return encoder
    return fast


def inference_encoder(encoder: Any) -> Any:
    """What computes ``encoder``'s features where no gradient is needed: its checked inference copy
    (:func:`inference_copy`), built once per weight state, or the encoder itself when it
    does not get one (:func:`wants_copy`)."""
    if not wants_copy(encoder):
        return encoder
    state = weight_state(encoder)
    built = _BUILT.get(encoder)
    if built is None or built[0] != state:
        built = _BUILT[encoder] = (state, _build(encoder))
    return built[1]
