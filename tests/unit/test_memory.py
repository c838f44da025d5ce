"""The services' garbage collector settings (services/runtime/memory.py), in a process of
their own (freezing the test process's heap would outlive the test)."""

from __future__ import annotations

import json
import subprocess
import sys

from services.runtime.memory import OLDER_EVERY, YOUNG_EVERY

PROBE = """
import gc, json, weakref
from services.runtime.memory import settle_heap
class Cycle:
    pass
a, b = Cycle(), Cycle()
a.other, b.other = b, a
start_up_garbage = weakref.ref(a)
del a, b
settle_heap()
frozen = gc.get_freeze_count()
c, d = Cycle(), Cycle()
c.other, d.other = d, c
del c, d
print(json.dumps({
    "threshold": gc.get_threshold(),
    "frozen": frozen,
    "garbage_frozen": start_up_garbage() is not None,
    "later_cycle_collected": gc.collect() >= 2,
}))
"""


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    got = json.loads(out)
    assert got["threshold"] == [YOUNG_EVERY, OLDER_EVERY, OLDER_EVERY]
    assert YOUNG_EVERY > 700  # less often than CPython's default
    assert got["frozen"] > 1000  # the modules, classes and functions imported so far
    assert not got["garbage_frozen"]
    # Cyclic garbage made after start-up is still collected.
    assert got["later_cycle_collected"]
