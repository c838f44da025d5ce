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
