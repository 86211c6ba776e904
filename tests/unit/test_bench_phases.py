"""The benchmark's wall time by phase: nested phases pause the outer one, and a run reports its split."""

from __future__ import annotations

import time
import pytest

from align.bench.execute.phases import OTHER, PhaseClock


def test_nested_phases_pause_the_outer_one_and_add_up() -> None:
    clock = PhaseClock()
    started = time.perf_counter()
    with clock.phase("fits"):
        time.sleep(0.02)
        with clock.phase("image features"):
            time.sleep(0.05)
        time.sleep(0.02)
    with clock.phase("image features"):
        time.sleep(0.01)
    total = time.perf_counter() - started
    assert clock.seconds["image features"] == pytest.approx(0.06, abs=0.02)
    assert clock.seconds["fits"] == pytest.approx(0.04, abs=0.02)
    assert clock.seconds["fits"] < clock.seconds["image features"]  # the inner phase is not counted twice
    split = clock.split(total)
    assert list(split) == ["image features", "fits", OTHER]
    assert sum(split.values()) == pytest.approx(total, abs=0.01)


def test_a_phase_left_by_an_error_is_still_counted() -> None:
    clock = PhaseClock()
    with pytest.raises(RuntimeError), clock.phase("scoring"):
        time.sleep(0.01)
        raise RuntimeError("boom")
    with clock.phase("fits"):
        pass
    assert clock.seconds["scoring"] >= 0.01 and clock.seconds["fits"] < 0.01

