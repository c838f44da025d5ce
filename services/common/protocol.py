"""The district protocol for each kind of document agents show (DESIGN §1).

Shown on the incident page and in every alert. Issue 6 moves this text to an editable file.
"""

from __future__ import annotations

from schemas.report import Document

_DO_NOT_ADMIN = (
    "Do not admit the agents. Keep them outside; do not let them speak to students or staff. "
    "An administrative warrant or subpoena (e.g. DHS/ICE forms I-200, I-205) does not allow "
    "entry. The law department has been alerted and is reviewing."
)
_JUDICIAL = (
    "Do not grant access yet. Check that the document names a court and is signed by a judge; "
    "wait for the law department, which has been alerted, before anyone is admitted. "
    "Do not share student information or anyone's immigration status."
)

PROTOCOL: dict[Document, str] = {
    Document.NONE: (
        "No document: do not admit the agents. Keep them outside and do not let them speak to "
        "students or staff. The law department and safety office have been alerted."
    ),
    Document.ADMINISTRATIVE_WARRANT: _DO_NOT_ADMIN,
    Document.ADMINISTRATIVE_SUBPOENA: _DO_NOT_ADMIN,
    Document.JUDICIAL_WARRANT: _JUDICIAL,
    Document.JUDICIAL_SUBPOENA: _JUDICIAL,
    Document.COURT_ORDER: _JUDICIAL,
    Document.UNKNOWN: (
        "Treat the document as not allowing entry until the law department reviews it. Keep the "
        "agents outside; ask for a copy; do not share student information or immigration status."
    ),
}

LABELS: dict[str, str] = {
    "ice": "ICE",
    "cbp": "CBP",
    "hsi": "HSI",
    "dhs_other": "DHS (other)",
    "fbi": "FBI",
    "us_marshals": "US Marshals",
    "local_police": "Local police",
    "other": "Other",
    "unknown": "Unknown",
    "none": "No document",
    "administrative_warrant": "Administrative warrant",
    "administrative_subpoena": "Administrative subpoena",
    "judicial_warrant": "Judicial warrant",
    "judicial_subpoena": "Judicial subpoena",
    "court_order": "Court order",
    "yes": "Yes",
    "no": "No",
    "unsure": "Unsure",
    "student": "A student",
    "parent": "A parent",
    "staff": "A staff member",
    "records": "Records",
    "unspecified": "Not stated",
    "kept_outside": "Kept outside",
    "left": "Agents left",
    "entered_with_warrant": "Entered with a warrant",
    "entered_without_consent": "Entered without consent",
}


def label(value: object) -> str:
    raw = getattr(value, "value", value)
    return LABELS.get(str(raw), str(raw))
