"""Where the runner's independent units run: in the calling process (the default), or on a Ray cluster.

A unit is one aligner and seed on one encoder pair and dataset entry: its fit (or reuse of a saved fit)
and every task result it writes (:func:`align.bench.execute.units.run_unit`). Units share nothing but files, so they may
run anywhere that sees the same files.

Ray (``pip install 'align[ray]'``; ``align bench --executor ray [--ray-address auto]``): the driver
reads the config, checks which results are missing, runs sweeps and computes each unit's image and fit
text features (through the feature cache) before dispatch; those tensors travel with the unit. Every node
must see the same filesystem paths for ``ALIGN_HOME`` (its feature cache, ``$ALIGN_HOME/features`` or
``$ALIGN_FEATURE_CACHE``, and the assets datasets are read from) and for the results folder: a worker
writes its results there itself, atomically, exactly as the serial run does, and text features a task
needs (prompts, eval captions) go through that shared cache, where concurrent writers of one entry
write identical, atomically placed shards. A unit that dies leaves no result behind (each file appears
whole or not at all) and is redone by the next run, as after an interrupted serial run; the driver
waits for every other unit before raising the first failure, so one bad unit costs only itself.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from align.errors import BadInputError

Unit = Callable[[], Any]


class SerialExecutor:
    """Each unit runs where it is submitted, in order: the runner's behaviour without an executor."""

    def submit(self, unit: Unit, on_done: Callable[[Any], None]) -> None:
        on_done(unit())

    def finish(self) -> None:
        """Nothing is left: every unit ran in :meth:`submit`."""


def _call(unit: Unit) -> Any:
    return unit()


class RayExecutor:
    """Units run as Ray tasks (one CPU each unless ``num_cpus`` says otherwise); :meth:`finish` waits for
    all, hands each report to its ``on_done`` in submission order, then raises the first failure."""

    def __init__(self, address: str | None = None, num_cpus: float = 1) -> None:
        if importlib.util.find_spec("ray") is None:
            raise BadInputError("--executor ray needs Ray: pip install 'align[ray]'")
        import ray

        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        self._ray = ray
        self._remote = ray.remote(num_cpus=num_cpus, max_retries=0)(_call)
        self._pending: list[tuple[Any, Callable[[Any], None]]] = []

    def submit(self, unit: Unit, on_done: Callable[[Any], None]) -> None:
        self._pending.append((self._remote.remote(unit), on_done))

    def finish(self) -> None:
        failure: BaseException | None = None
        pending, self._pending = self._pending, []
        for ref, on_done in pending:
            try:
                report = self._ray.get(ref)
            except Exception as err:  # the unit's own error, wrapped by Ray
                failure = failure or getattr(err, "cause", None) or err
                continue
            on_done(report)
        if failure is not None:
            raise failure


def make_executor(name: str, address: str | None = None) -> SerialExecutor | RayExecutor:
    """The executor ``align bench --executor`` names."""
    if name == "serial":
        return SerialExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise BadInputError(f"unknown executor {name!r}; use serial or ray")
