"""Optional aligners: a config entry marked ``optional: true`` (a pretrained CLIP reference row) runs only
where the encoders it brings can be built, and is otherwise left out with one line saying why.

The encoders are built here, once, before any dataset is read: a missing checkpoint is found in a second,
not after an hour of other work, and a run on a machine without the weights still scores everything
else and exits 0. The encoders built stay in the feature bank for the run's own use.
"""

from __future__ import annotations

from collections.abc import Callable

from align.bench.execute.features import FeatureBank
from align.bench.plan.units import AlignerPlan
from align.errors import EncoderUnavailable


def unavailable(plan: AlignerPlan, bank: FeatureBank) -> str | None:
    """Why ``plan``'s own encoders cannot be built here (the encoder's one-line error), or None."""
    for kind, name in (("image", plan.image_side), ("text", plan.text_side)):
        if name is None:
            continue
        try:
            bank.encoder(kind, name)
        except EncoderUnavailable as err:
            return str(err)
    return None


def available(plans: list[AlignerPlan], bank: FeatureBank, echo: Callable[[str], None]) -> list[AlignerPlan]:
    """``plans`` without the optional ones whose encoders cannot be built, each named in one ``skipped:`` line."""
    kept = []
    for plan in plans:
        why = unavailable(plan, bank) if plan.spec.optional else None
        if why is None:
            kept.append(plan)
            continue
        sides = plan.image_side if plan.image_side == plan.text_side else f"{plan.image_side} and {plan.text_side}"
        echo(f"skipped: {plan.spec.display} (optional, on its own encoders {sides}): {why}")
    return kept
