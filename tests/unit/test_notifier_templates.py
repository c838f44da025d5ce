"""Alert templates per role and language: exact snapshots, the liaison rule, start-up check."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from schemas.events import EncounterReported, NotificationRequested, derive_id
from schemas.report import EncounterReport
from services.notifier.message import (
    TEMPLATES,
    AlertContext,
    TemplateCheckError,
    Templates,
    build_email,
    check_templates,
    variant_for,
)
from tests.support import report, stored_report

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
NOW = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)  # fixed: snapshots never depend on the clock
CTX = AlertContext(
    district_name="Demo Public Schools",
    school_name="Hamline Elementary",
    timezone="America/Chicago",
    recipient_name="Someone",
    status_url="http://dooralert.example/incidents/inc-1?token=abc",
    emergency_phone="+1 555 0100",
)


def alert(
    *,
    role: str,
    language: str,
    severity: str = "high",
    templates: Templates | None = None,
    **overrides: object,
) -> EmailMessage:
    nid = derive_id("inc-1", "notification", "0", role, "c", "email")
    r = EncounterReport.model_validate(
        {**report(notes="Two agents asked for the office.", **overrides), "occurred_at": NOW}
    )
    enc = EncounterReported(
        id=derive_id("inc-1", "encounter.reported"),
        source="intake",
        incident_id="inc-1",
        school_id="hamline",
        occurred_at=NOW,
        recorded_at=NOW,
        correlation_id="inc-1",
        actor="key-hamline",
        data=stored_report(r),
    )
    req = NotificationRequested(
        id=derive_id(nid, "requested"),
        source="router",
        incident_id="inc-1",
        school_id="hamline",
        occurred_at=NOW,
        recorded_at=NOW,
        correlation_id="inc-1",
        actor="system",
        data={
            "notification_id": nid,
            "role": role,
            "contact_id": "c",
            "channel": "email",
            "severity": severity,
            "routes": ["any-encounter"],
        },
    )
    return build_email(
        request=req,
        report=enc,
        ctx=CTX,
        sender="dooralert <a@dooralert.invalid>",
        to="x@district.example",
        language=language,
        templates=templates,
        notes=r.notes,
    )


def rendering(msg: EmailMessage) -> str:
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return f"Subject: {msg['Subject']}\n\n--- text/plain ---\n{plain}\n--- text/html ---\n{html}"


CASES = [("law", "en"), ("law", "es"), ("family_liaison", "en"), ("family_liaison", "es")]


@pytest.mark.parametrize(("role", "language"), CASES)
def test_the_alert_matches_its_committed_snapshot(role: str, language: str) -> None:
    path = SNAPSHOTS / f"alert.{role}.{language}.txt"
    got = rendering(alert(role=role, language=language))
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8"), f"{path} differs (UPDATE_SNAPSHOTS=1)"


def test_spanish_contacts_get_a_spanish_alert() -> None:
    msg = alert(role="law", language="es")
    assert msg["Subject"].startswith("[dooralert ALERTA] Agentes en Hamline Elementary")
    assert msg["Content-Language"] == "es"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "No deje entrar a los agentes" in text and "Orden administrativa" in text


def test_the_family_liaison_alert_leaves_out_agent_count_and_credentials() -> None:
    assert variant_for("family_liaison") == "liaison" and variant_for("law") == "alert"
    for language in ("en", "es"):
        msg = alert(role="family_liaison", language=language, agent_count=7)
        for part in ("plain", "html"):
            body = msg.get_body((part,)).get_content()  # type: ignore[union-attr]
            assert "7" not in body.replace("2025", "")
            assert "credentials" not in body and "credenciales" not in body
        full = alert(role="law", language=language, agent_count=7)
        assert "7 (" in full.get_body(("plain",)).get_content()  # type: ignore[union-attr]


@pytest.mark.parametrize("language", ["en", "es"])
def test_subject_never_carries_cr_or_lf(language: str) -> None:
    msg = alert(role="law", language=language, severity="critical")
    assert "\r" not in msg["Subject"] and "\n" not in msg["Subject"]


def test_the_shipped_templates_pass_the_start_up_check() -> None:
    check_templates()


def test_a_missing_template_stops_start_up_with_its_name(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES, root)
    (root / "es" / "liaison.html").unlink()
    with pytest.raises(TemplateCheckError, match=r"es/liaison\.html"):
        check_templates(root)


def test_a_broken_template_stops_start_up_with_file_and_reason(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES, root)
    (root / "en" / "alert.txt").write_text("Agents at {{ ctx.school_nme }}\n{% if %}")
    with pytest.raises(TemplateCheckError, match=r"en/alert\.txt.*TemplateSyntaxError"):
        check_templates(root)
    (root / "en" / "alert.txt").write_text("Agents at {{ ctx.school_nme }}\n")
    with pytest.raises(TemplateCheckError, match=r"UndefinedError.*school_nme"):
        check_templates(root)


def test_the_notifier_refuses_to_start_on_a_broken_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.domain.directory import load_directory
    from services.notifier import main, message
    from services.runtime.settings import EXAMPLE_CONFIG_DIR, Settings

    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES, root)
    (root / "es" / "subject.txt").unlink()
    monkeypatch.setattr(message, "default_templates", lambda: Templates(root))
    monkeypatch.setattr(main, "default_templates", lambda: Templates(root))
    with pytest.raises(SystemExit, match=r"(?s)refusing to start.*es/subject\.txt"):
        main.build_app(Settings(), directory=load_directory(EXAMPLE_CONFIG_DIR))
