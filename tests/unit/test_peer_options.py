"""benchmarks/peer.py's `--nice SERVICE=N`: which services it takes, and refusing the rest."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.peer import _nice


def test_nice_takes_the_alert_path_services() -> None:
    assert _nice("notifier=5") == ("notifier", 5)
    assert _nice("intake=-5") == ("intake", -5)
    assert _nice("router=0") == ("router", 0)


@pytest.mark.parametrize("text", ["ledger=10", "notifier", "notifier=x", "nats-server=5", "=3"])
def test_nice_refuses_anything_else(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _nice(text)


def test_several_bursts_show_their_median_first() -> None:
    from benchmarks.peer import _bursts

    assert _bursts([]) == "skipped"
    assert _bursts([{"seconds": 5.0, "complete": True}]) == "5.00 s"
    three = [{"seconds": s, "complete": True} for s in (9.91, 6.79, 6.28)]
    assert _bursts(three) == "**6.79 s** (9.91 s, 6.79 s, 6.28 s)"
    three[2]["complete"] = False  # its time only runs to the last complete report: marked
    assert _bursts(three) == "**6.79 s** (9.91 s, 6.79 s, 6.28 s INCOMPLETE)"


def test_a_burst_shows_the_benchmarks_own_cpu_meanwhile() -> None:
    from benchmarks.peer import _harness

    burst = {"harness_cpu_s": {"client": 2.331, "smtp sink": 1.5}}
    assert _harness(burst) == "the benchmark meanwhile: client 2.33 s, smtp sink 1.50 s"
    assert _harness({}) == "the benchmark meanwhile: not measured"  # a result from before
