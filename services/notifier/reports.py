"""Each incident's report, read from the log once: a report is followed by four to eight alert
emails, and each of them fetched the same immutable event (a NATS round trip per email).

Only alerts and escalations use it; follow-ups fold the incident as the log holds it now
(main.py). A report that is not in the log yet is not remembered, so its request is retried
and reads the log again. The newest `size` incidents are kept.
"""

from __future__ import annotations

from collections import OrderedDict

from schemas.events import EncounterReported

DEFAULT_SIZE = 1024


class ReportCache:
    """incident id -> its `encounter.reported` event as first read, the newest `size` kept."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = max(1, size)
        self._reports: OrderedDict[tuple[str, str], EncounterReported] = OrderedDict()

    def get(self, school_id: str, incident_id: str) -> EncounterReported | None:
        """The remembered report, or None."""
        key = (school_id, incident_id)
        report = self._reports.get(key)
        if report is not None:
            self._reports.move_to_end(key)
        return report

    def put(self, report: EncounterReported) -> None:
        """Remember `report` under its own school and incident (never another's)."""
        self._reports[(report.school_id, report.incident_id)] = report
        self._reports.move_to_end((report.school_id, report.incident_id))
        while len(self._reports) > self.size:
            self._reports.popitem(last=False)

    def __len__(self) -> int:
        return len(self._reports)
