"""The live hub: a viewer joining with a newer state than the shared poller has read (the
page of the staff member who just pressed All clear, opening after the redirect) hands it to
the viewers already watching, instead of keeping it to itself until the next change."""

from __future__ import annotations

import asyncio

from services.domain.incident import IncidentState
from services.intake.live import LiveHub


def state(count: int, status: str = "open") -> IncidentState:
    return IncidentState(
        incident_id="inc-1",
        school_id="hamline",
        status=status,  # type: ignore[arg-type]
        event_count=count,
    )


async def test_a_newer_state_brought_by_a_joining_viewer_reaches_those_watching() -> None:
    hub = LiveHub(poll_seconds=0.05, per_token=0, per_client=0)
    in_log = state(10)

    async def read() -> IncidentState:
        return in_log

    async with hub.watch(state(10), read) as watching:
        seen = watching.version
        await asyncio.sleep(0.15)  # the poller reads: nothing new
        assert watching.version == seen
        # The all-clear is recorded; before the poller's next read, the presser's page opens.
        in_log = state(11, "resolved")
        async with hub.watch(state(11, "resolved"), read) as joined:
            assert joined is watching
            # Those already watching are woken with it at once, not at some later change.
            assert watching.version > seen and watching.state.status == "resolved"
            await asyncio.sleep(0.15)
            assert watching.state.event_count == 11
