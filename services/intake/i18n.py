"""The words of the staff pages in each language (pure data), and choosing the language.

The language comes from `?lang=` (then remembered in a cookie), else that cookie, else the
browser's Accept-Language, else English. A key missing in one language falls back to English.
"""

from __future__ import annotations

from services.domain.protocol import LABELS, LABELS_ES

LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "dooralert_lang"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "app": "dooralert",
        "switch_to": "Español",
        "switch_lang": "es",
        "emergency_line": "District emergency line",
        "sign_out": "Sign out",
        "signin.title": "Sign in to report agents at the door",
        "signin.intro": "Sign in once on this device with your school's intake key. You stay "
        "signed in for {days} days, so in an emergency the form opens at once.",
        "signin.school": "School",
        "signin.key": "School intake key",
        "signin.submit": "Sign in",
        "signin.bad_key": "This intake key is not recognised for the school chosen.",
        "signin.expired": "Your sign-in has expired. Sign in again with your school's intake key.",
        "form.title": "Law-enforcement agents at the door",
        "form.intro": "Keep the agents outside. Do not let them speak to students or staff. "
        "This form alerts the law department and the safety office at once.",
        "form.school": "School",
        "form.location": "Which door or area",
        "form.location_hint": "e.g. Front entrance",
        "form.agency": "Agency they said they are from",
        "form.count": "How many agents",
        "form.time": "Time they arrived",
        "form.credentials": "Did they show credentials?",
        "form.yes": "Yes",
        "form.no": "No",
        "form.document": "Document shown",
        "form.signed": "Signed by a judge?",
        "form.purpose": "Who or what are they asking about",
        "form.entry": "Where are the agents now",
        "form.choose": "Choose…",
        "form.guidance": "What to do",
        "form.guidance_all": "What to do, by document shown",
        "form.guidance_pick": "Choose the document shown to see what to do.",
        "form.notes": "Notes (optional)",
        "form.notes_warning": "Do not write names of students or families, or anyone's "
        "immigration status.",
        "form.notes_left": "characters left",
        "form.submit": "Send alert",
        "form.fix": "Please correct the fields marked below.",
        "form.unavailable": "Could not record the report. Call {phone} now.",
        "form.law_department": "the law department",
        "incident.title": "Agents at {school}",
        "incident.reported": "Reported",
        "incident.where": "Where",
        "incident.agency": "Agency stated",
        "incident.agents": "Agents",
        "incident.document": "Document",
        "incident.signed": "signed by a judge",
        "incident.entry": "Entry",
        "incident.severity": "Severity",
        "incident.deciding": "deciding…",
        "incident.alerted": "Who has been alerted",
        "incident.role": "Role",
        "incident.contact": "Contact",
        "incident.channel": "Channel",
        "incident.status": "Status",
        "incident.sending": "Alerts are being sent…",
        "incident.requested": "sending",
        "incident.sent": "delivered",
        "incident.failed": "failed",
        "incident.acknowledged": "Acknowledged",
        "incident.waiting_ack": "Waiting for acknowledgement from",
        "incident.required": "Must acknowledge",
        "incident.notified_at": "Notified",
        "incident.acked_at": "Acknowledged",
        "incident.acked_by": "By",
        "incident.escalated": "Escalated",
        "incident.no_ack_from": "no acknowledgement from",
        "incident.could_not_reach": "could not reach",
        "incident.told": "told",
        "incident.all_clear": "All clear",
        "incident.since": "since",
        "incident.updates": "Updates",
        "incident.followup": "Follow-up",
        "incident.agents_left": "The agents have left",
        "incident.document_later": "A document was shown",
        "incident.record_document": "Record the document",
        "incident.resolve": "All clear",
        "incident.refresh": "This page updates by itself.",
        "incident.live": "Live",
        "incident.id": "Incident",
        "error.csrf": "This form has expired or was opened somewhere else. Go back, reload the "
        "page and submit again.",
        "error.rate": "Too many submissions in a short time. Wait {seconds} seconds and try "
        "again; if agents are at the door now, call {phone}.",
        "error.other_school": "You are signed in for another school.",
        "error.not_found": "No such incident.",
        "error.go_back": "Back to the form",
        "reason.required": "required",
    },
    "es": {
        "app": "dooralert",
        "switch_to": "English",
        "switch_lang": "en",
        "emergency_line": "Línea de emergencia del distrito",
        "sign_out": "Cerrar sesión",
        "signin.title": "Inicie sesión para reportar agentes en la puerta",
        "signin.intro": "Inicie sesión una vez en este dispositivo con la clave de su escuela. "
        "La sesión dura {days} días, para que en una emergencia el formulario "
        "se abra de inmediato.",
        "signin.school": "Escuela",
        "signin.key": "Clave de la escuela",
        "signin.submit": "Iniciar sesión",
        "signin.bad_key": "Esta clave no corresponde a la escuela elegida.",
        "signin.expired": "Su sesión ha vencido. Inicie sesión otra vez con la clave de su "
        "escuela.",
        "form.title": "Agentes del orden en la puerta",
        "form.intro": "Mantenga a los agentes afuera. No permita que hablen con estudiantes ni "
        "con el personal. Este formulario avisa de inmediato al departamento "
        "legal y a la oficina de seguridad.",
        "form.school": "Escuela",
        "form.location": "Qué puerta o área",
        "form.location_hint": "p. ej. Entrada principal",
        "form.agency": "Agencia que dijeron ser",
        "form.count": "Cuántos agentes",
        "form.time": "Hora de llegada",
        "form.credentials": "¿Mostraron credenciales?",
        "form.yes": "Sí",
        "form.no": "No",
        "form.document": "Documento mostrado",
        "form.signed": "¿Firmado por un juez?",
        "form.purpose": "Por quién o qué preguntan",
        "form.entry": "Dónde están los agentes ahora",
        "form.choose": "Elija…",
        "form.guidance": "Qué hacer",
        "form.guidance_all": "Qué hacer, según el documento mostrado",
        "form.guidance_pick": "Elija el documento mostrado para ver qué hacer.",
        "form.notes": "Notas (opcional)",
        "form.notes_warning": "No escriba nombres de estudiantes ni de familias, ni el estatus "
        "migratorio de nadie.",
        "form.notes_left": "caracteres restantes",
        "form.submit": "Enviar alerta",
        "form.fix": "Corrija los campos marcados abajo.",
        "form.unavailable": "No se pudo registrar el reporte. Llame ahora al {phone}.",
        "form.law_department": "departamento legal",
        "incident.title": "Agentes en {school}",
        "incident.reported": "Reportado",
        "incident.where": "Dónde",
        "incident.agency": "Agencia indicada",
        "incident.agents": "Agentes",
        "incident.document": "Documento",
        "incident.signed": "firmado por un juez",
        "incident.entry": "Entrada",
        "incident.severity": "Gravedad",
        "incident.deciding": "decidiendo…",
        "incident.alerted": "A quién se ha avisado",
        "incident.role": "Función",
        "incident.contact": "Contacto",
        "incident.channel": "Canal",
        "incident.status": "Estado",
        "incident.sending": "Se están enviando los avisos…",
        "incident.requested": "enviando",
        "incident.sent": "entregado",
        "incident.failed": "falló",
        "incident.acknowledged": "Confirmado",
        "incident.waiting_ack": "Esperando confirmación de",
        "incident.required": "Deben confirmar",
        "incident.notified_at": "Avisado",
        "incident.acked_at": "Confirmado",
        "incident.acked_by": "Por",
        "incident.escalated": "Escalado",
        "incident.no_ack_from": "sin confirmación de",
        "incident.could_not_reach": "no se pudo contactar a",
        "incident.told": "se avisó a",
        "incident.all_clear": "Todo despejado",
        "incident.since": "desde",
        "incident.updates": "Novedades",
        "incident.followup": "Seguimiento",
        "incident.agents_left": "Los agentes se fueron",
        "incident.document_later": "Mostraron un documento",
        "incident.record_document": "Registrar el documento",
        "incident.resolve": "Todo despejado",
        "incident.refresh": "Esta página se actualiza sola.",
        "incident.live": "En vivo",
        "incident.id": "Incidente",
        "error.csrf": "Este formulario venció o se abrió en otro lugar. Vuelva atrás, recargue "
        "la página y envíelo otra vez.",
        "error.rate": "Demasiados envíos en poco tiempo. Espere {seconds} segundos y vuelva a "
        "intentarlo; si hay agentes en la puerta ahora, llame al {phone}.",
        "error.other_school": "Su sesión es de otra escuela.",
        "error.not_found": "No existe ese incidente.",
        "error.go_back": "Volver al formulario",
        "reason.required": "obligatorio",
    },
}

_ROLES_EN = {
    "law": "Law department",
    "safety": "Safety office",
    "leadership": "District leadership",
    "principal": "Principal",
    "family_liaison": "Family liaison",
}


def translate(language: str, key: str, **values: object) -> str:
    text = MESSAGES.get(language, {}).get(key) or MESSAGES[DEFAULT_LANGUAGE].get(key, key)
    return text.format(**values) if values else text


def label(value: object, language: str = DEFAULT_LANGUAGE) -> str:
    """A report value (enum) or role shown to people, in their language."""
    raw = str(getattr(value, "value", value))
    if "+" in raw:  # an escalation recipient standing in for several roles
        return " + ".join(label(part, language) for part in raw.split("+"))
    english = LABELS.get(raw) or _ROLES_EN.get(raw, raw)
    return LABELS_ES.get(raw, english) if language == "es" else english


def from_accept_language(header: str | None) -> str | None:
    """The supported language the browser prefers most (q-values honoured)."""
    best: tuple[float, str] | None = None
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        if lang not in LANGUAGES:
            continue
        q = 1.0
        for p in params.split(";"):
            name, _, val = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        # Earlier entries win ties, as browsers list them in order of preference.
        if q > 0 and (best is None or q > best[0]):
            best = (q - i * 1e-6, lang)
    return best[1] if best else None


def choose_language(query: str | None, cookie: str | None, accept: str | None) -> tuple[str, bool]:
    """(language, whether to remember it in the cookie)."""
    if query in LANGUAGES:
        return query, query != cookie  # type: ignore[return-value]
    if cookie in LANGUAGES:
        return cookie, False  # type: ignore[return-value]
    return from_accept_language(accept) or DEFAULT_LANGUAGE, False
