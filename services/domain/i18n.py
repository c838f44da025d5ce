"""Every word dooralert shows people, in English and Spanish: one catalogue (pure data).

Three tables, each with one dict per language and the same keys in every language:
`VALUES` (a report's field values, as the enums in schemas/report.py spell them), `ROLES`
(the roles of services/domain/directory.py) and `MESSAGES` (the intake pages' sentences, the
notifier's wording and the district protocol's built-in text). Read them through `label()`,
`role_name()` and `text()`; a key missing in one language falls back to English.

Long because it is data: the whole of each language in one place, for whoever translates it.
"""

from __future__ import annotations

from typing import Literal, TypeGuard

from services.domain.i18n_status import STATUS_MESSAGES

Language = Literal["en", "es"]
LANGUAGES: tuple[Language, ...] = ("en", "es")
DEFAULT_LANGUAGE: Language = "en"

# An escalation recipient may stand in for several roles: "law+safety".
ROLE_JOIN = "+"


def is_language(value: object) -> TypeGuard[Language]:
    """Whether `value` names a language this catalogue has."""
    return value in LANGUAGES


def text(key: str, language: str = DEFAULT_LANGUAGE, **values: object) -> str:
    """The sentence `key` in `language`, its `{placeholders}` filled from `values`."""
    own = MESSAGES[language].get(key) if is_language(language) else None
    found = own or MESSAGES[DEFAULT_LANGUAGE].get(key, key)
    return found.format(**values) if values else found


def label(value: object, language: str = DEFAULT_LANGUAGE) -> str:
    """A report field's value (an enum or its value) or a role, in words; else as given."""
    raw = str(getattr(value, "value", value))
    if ROLE_JOIN in raw:
        return " + ".join(label(part, language) for part in raw.split(ROLE_JOIN))
    english = VALUES[DEFAULT_LANGUAGE].get(raw) or ROLES[DEFAULT_LANGUAGE].get(raw, raw)
    if language == DEFAULT_LANGUAGE or not is_language(language):
        return english
    return VALUES[language].get(raw) or ROLES[language].get(raw, english)


def role_name(role: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A role named inside a sentence ("as law department"); an unknown role as given."""
    name = ROLES[language if is_language(language) else DEFAULT_LANGUAGE].get(role)
    # Role names are common nouns in both languages: mid-sentence they start in lower case.
    return name[:1].lower() + name[1:] if name else role


VALUES: dict[Language, dict[str, str]] = {
    "en": {
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
        # An incident's severity (schemas/events.py `Severity`).
        "info": "Information",
        "high": "High",
        "critical": "Critical",
        # A delivery channel (schemas/events.py `Channel`).
        "email": "Email",
        "webhook": "Webhook",
        "apprise": "Chat or text message",
    },
    "es": {
        "ice": "ICE",
        "cbp": "CBP",
        "hsi": "HSI",
        "dhs_other": "DHS (otra)",
        "fbi": "FBI",
        "us_marshals": "US Marshals",
        "local_police": "Policía local",
        "other": "Otra",
        "unknown": "Desconocido",
        "none": "Ningún documento",
        "administrative_warrant": "Orden administrativa",
        "administrative_subpoena": "Citación administrativa",
        "judicial_warrant": "Orden judicial",
        "judicial_subpoena": "Citación judicial",
        "court_order": "Orden de un tribunal",
        "yes": "Sí",
        "no": "No",
        "unsure": "No se sabe",
        "student": "Un estudiante",
        "parent": "Un padre o madre",
        "staff": "Un miembro del personal",
        "records": "Expedientes",
        "unspecified": "No indicado",
        "kept_outside": "Se quedaron afuera",
        "left": "Los agentes se fueron",
        "entered_with_warrant": "Entraron con una orden",
        "entered_without_consent": "Entraron sin consentimiento",
        "info": "Informativa",
        "high": "Alta",
        "critical": "Crítica",
        "email": "Correo electrónico",
        "webhook": "Webhook",
        "apprise": "Chat o mensaje de texto",
    },
}

ROLES: dict[Language, dict[str, str]] = {
    "en": {
        "law": "Law department",
        "safety": "Safety office",
        "leadership": "District leadership",
        "principal": "Principal",
        "family_liaison": "Family liaison",
    },
    "es": {
        "law": "Departamento legal",
        "safety": "Oficina de seguridad",
        "leadership": "Dirección del distrito",
        "principal": "Director(a)",
        "family_liaison": "Enlace con las familias",
    },
}

# The district protocol's built-in guidance per document (services/domain/protocol.py), which
# a district's protocol.yaml may replace. Several documents share one text.
_DO_NOT_ADMIT = (
    "Do not admit the agents. Keep them outside; do not let them speak to students or staff. "
    "An administrative warrant or subpoena (e.g. DHS/ICE forms I-200, I-205) does not allow "
    "entry. Wait for the law department, which reviews the document."
)
_JUDICIAL = (
    "Do not grant access yet. Check that the document names a court and is signed by a judge; "
    "wait for the law department before anyone is admitted. "
    "Do not share student information or anyone's immigration status."
)
_DO_NOT_ADMIT_ES = (
    "No deje entrar a los agentes. Manténgalos afuera; no permita que hablen con estudiantes ni "
    "con el personal. Una orden o citación administrativa (p. ej. formularios DHS/ICE I-200, "
    "I-205) no autoriza la entrada. Espere al departamento legal, que revisa el documento."
)
_JUDICIAL_ES = (
    "Todavía no permita el acceso. Verifique que el documento nombre un tribunal y esté firmado "
    "por un juez; espere al departamento legal antes de dejar entrar a nadie. No comparta "
    "información de estudiantes ni el estatus migratorio de nadie."
)

MESSAGES: dict[Language, dict[str, str]] = {
    "en": {
        # The intake pages.
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
        # A report sent while signed out: kept, and sent once the key is given.
        "signin.kept": "Your sign-in has expired. Nothing you typed is lost: enter your "
        "school's intake key and the alert is sent.",
        "signin.kept_form": "Your sign-in has expired. Your entries are kept: enter your "
        "school's intake key to go back to the form.",
        "signin.kept_title": "The report that will be sent",
        "signin.submit_send": "Sign in and send the alert",
        "form.title": "Law-enforcement agents at the door",
        "form.intro": "Keep the agents outside. Do not let them speak to students or staff. "
        "When you press Send alert, the law department and the safety office are alerted at "
        "once.",
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
        # The notes counter: {n} filled in by intake.js (and the page, without JavaScript).
        "form.notes_left": "{n} characters left",
        "form.notes_left_one": "{n} character left",
        "form.submit": "Send alert",
        "form.fix": "Please correct the fields marked below.",
        "form.unavailable": "Could not record the report. Call {phone} now.",
        "form.law_department": "the law department",
        "form.doors": "Which door are the agents at?",
        "form.door_other": "Another door or place",
        "form.door_other_field": "Other door or place (type it)",
        "form.fast_hint": "Choose the door, then send. Everything else is optional.",
        "form.more": "More details (optional)",
        "form.notes_over": "{n} characters too many",
        "form.notes_over_one": "{n} character too many",
        "form.errors_title": "Please fix these before sending:",
        "form.err.location": "Please enter the door",
        "form.err.location_long": "The door can be at most 120 characters",
        "form.err.location_line": "Write the door on one line",
        "form.err.agent_count": "Enter how many agents, from 1 to 50",
        "form.err.credentials_shown": "Please choose Yes or No",
        "form.err.choice": "Please choose one of the options",
        "form.err.occurred_time": "Enter the time as hours and minutes, e.g. 10:25",
        "form.err.occurred_at": "Enter a time from the last few hours, not later than now",
        "form.err.notes_long": "Notes can be at most 500 characters",
        "form.err.notes_control": "Notes can only contain ordinary text",
        "form.err.other": "Please check this field",
        "pipeline.advice": "Alerts may be delayed: also call {phone} now.",
        "pipeline.title": "Your report is recorded, but alerts are delayed",
        "incident.title": "Agents at {school}",
        "incident.reported": "Reported",
        "incident.where": "Where",
        "incident.agency": "Agency stated",
        "incident.agents": "Agents",
        "incident.purpose": "Asking about",
        "incident.credentials": "Credentials shown",
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
        "incident.notes": "Notes",
        "incident.notes_removed": "notes removed on {date}",
        "incident.followup": "Follow-up",
        "incident.followup_stale": "Someone else has just changed this incident, so the buttons "
        "below may no longer apply. What you typed is kept: send it, or reload the page to see "
        "the incident as it is now.",
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
        "error.report_rate": "This school has sent {limit} reports in the last minute, the most "
        "dooralert takes at once. Wait {seconds} seconds and send this one again. If agents are "
        "at the door now, {call}.",
        "error.submission": "This form could not be sent as it was (its submission id is not "
        "valid). Check the report below and send it again.",
        "call.phone": "call {phone}",
        "call.office": "call the district safety office",
        "error.other_school": "You are signed in for another school.",
        "error.not_found": "No such incident.",
        "link.expired": "This status link has expired. Ask the district office for the "
        "incident's status, or open it from a newer alert.",
        "link.revoked": "This status link was withdrawn by the district. If you should still "
        "follow this incident, ask the district office for a new link.",
        "link.invalid": "This status link is not valid: it was altered, is for another incident, "
        "or was not issued by this district.",
        "signout.unavailable": "Could not sign out: the system is unreachable. Try again in a "
        "moment; close this browser window if you are on a shared computer.",
        "error.go_back": "Back to the form",
        "reason.required": "required",
        # The notifier: what kind of notification this is, said first (subject prefix,
        # headline); none for the first alert. Then the acknowledgement link.
        "notify.escalation.prefix": "ESCALATED: ",
        "notify.escalation.headline": "ESCALATION: this alert has not been acknowledged in "
        "time. Please respond now.",
        "notify.update.prefix": "UPDATE: ",
        "notify.update.headline": "UPDATE: the situation at the door has changed. Current "
        "details below.",
        "notify.resolved.prefix": "ALL CLEAR: ",
        "notify.resolved.headline": "ALL CLEAR: the incident has been resolved. No further "
        "action is needed.",
        "notify.reopened.prefix": "AGENTS BACK: ",
        "notify.reopened.headline": "AGENTS BACK: the all clear is withdrawn and the incident "
        "is open again. Current details below; if you have not confirmed yet, please respond "
        "now.",
        "notify.ack": "Acknowledge (you are handling it)",
        # The district protocol, per document shown (schemas/report.py `Document`).
        "protocol.always": "Always: never share student information or anyone's immigration "
        "status.",
        "protocol.none": "No document: do not admit the agents. Keep them outside and do not let "
        "them speak to students or staff.",
        "protocol.administrative_warrant": _DO_NOT_ADMIT,
        "protocol.administrative_subpoena": _DO_NOT_ADMIT,
        "protocol.judicial_warrant": _JUDICIAL,
        "protocol.judicial_subpoena": _JUDICIAL,
        "protocol.court_order": _JUDICIAL,
        "protocol.unknown": "Treat the document as not allowing entry until the law department "
        "reviews it. Keep the agents outside; ask for a copy; do not share student information "
        "or immigration status.",
        # The free-text screen (services/domain/screening.py): what held-back text looks like.
        "screen.email": "looks like an e-mail address",
        "screen.phone": "looks like a phone number",
        "screen.date": "looks like a date (such as a birth date)",
        "screen.a_number": "looks like an A-number (alien registration number)",
        "screen.ssn": "looks like a Social Security number",
        "screen.id_number": "looks like a passport, visa or other ID number",
        "screen.immigration": "looks like someone's immigration status",
        "screen.name": "looks like a person's name",
        "screen.refused": "{what}: dooralert never records personal data or immigration "
        "status; remove it and send again",
        "screen.held_title": "Alert sent — some text was held back",
        "screen.held_intro": "The alert went out at once without the text below: it was not "
        "recorded, logged or e-mailed.",
        "screen.held_field": "{field}: {what}.",
        "screen.held_help": "Only you see this text. Remove names, contact details, dates, ID "
        "numbers and anything about immigration status, then send it as an update — or leave "
        "this page to discard it.",
        "screen.held_again": "This text still {what}: nothing was sent. Edit it and try again.",
        "screen.cleaned": "Cleaned text",
        "screen.send_update": "Send as an update",
        "screen.open_incident": "Open the incident page",
        "screen.notes": "Notes",
        # Error pages, and why a follow-up was not recorded (a `Refused`'s kind).
        "error.page_not_found": "There is no page at this address. Check the link, or go back "
        "to the form.",
        "error.method": "This page cannot be opened this way: it only answers a form. Go back "
        "and use the page's buttons.",
        "error.request": "This request could not be read as it was. Go back, reload the page "
        "and try again.",
        "error.internal": "Something went wrong on our side, and this may not have been "
        "recorded. If agents are at the door now, {call}.",
        "error.followup_invalid": "This update could not be sent as it was: nothing was "
        "recorded. Go back to the incident page and try again.",
        "error.to_incident": "Back to the incident page",
        "error.unavailable": "The system cannot be reached right now: nothing was recorded. "
        "If agents are at the door now, {call}.",
        "refused.bad_token": "This link is not valid or has expired.",
        "refused.other_incident": "This link is for another incident.",
        "refused.not_in_log": "No such incident.",
        "refused.already_acknowledged": "This was already confirmed. Nothing more is needed.",
        "refused.resolved": "This incident is already over (all clear): nothing more was recorded.",
        "refused.open": "This incident is open: there is no all clear to withdraw.",
        "refused.invalid": "This could not be sent as it was: nothing was recorded.",
        "refused.key_reused": "This report was already sent with other details. Reload the "
        "form and send it again.",
        # A delivery on the incident page, in plain words (the SMTP reason is for operators).
        "incident.not_delivered": "could not be delivered",
        "incident.retrying": "trying again",
        "screen.location_withheld": "(not recorded: held back by the privacy screen)",
    },
    "es": {
        # The intake pages.
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
        "signin.kept": "Su sesión ha vencido. No se perdió nada de lo escrito: escriba la "
        "clave de su escuela y la alerta se envía.",
        "signin.kept_form": "Su sesión ha vencido. Sus datos se conservan: escriba la clave de "
        "su escuela para volver al formulario.",
        "signin.kept_title": "El reporte que se enviará",
        "signin.submit_send": "Iniciar sesión y enviar la alerta",
        "form.title": "Agentes del orden en la puerta",
        "form.intro": "Mantenga a los agentes afuera. No permita que hablen con estudiantes ni "
        "con el personal. Al pulsar Enviar alerta, se avisa de inmediato al departamento "
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
        "form.notes_left": "{n} caracteres restantes",
        "form.notes_left_one": "{n} carácter restante",
        "form.submit": "Enviar alerta",
        "form.fix": "Corrija los campos marcados abajo.",
        "form.unavailable": "No se pudo registrar el reporte. Llame ahora al {phone}.",
        "form.law_department": "departamento legal",
        "form.doors": "¿En qué puerta están los agentes?",
        "form.door_other": "Otra puerta o lugar",
        "form.door_other_field": "Otra puerta o lugar (escríbalo)",
        "form.fast_hint": "Elija la puerta y envíe. Todo lo demás es opcional.",
        "form.more": "Más detalles (opcional)",
        "form.notes_over": "{n} caracteres de más",
        "form.notes_over_one": "{n} carácter de más",
        "form.errors_title": "Corrija esto antes de enviar:",
        "form.err.location": "Escriba la puerta",
        "form.err.location_long": "La puerta puede tener como máximo 120 caracteres",
        "form.err.location_line": "Escriba la puerta en una sola línea",
        "form.err.agent_count": "Escriba cuántos agentes, de 1 a 50",
        "form.err.credentials_shown": "Elija Sí o No",
        "form.err.choice": "Elija una de las opciones",
        "form.err.occurred_time": "Escriba la hora en horas y minutos, p. ej. 10:25",
        "form.err.occurred_at": "Escriba una hora de las últimas horas, no posterior a ahora",
        "form.err.notes_long": "Las notas pueden tener como máximo 500 caracteres",
        "form.err.notes_control": "Las notas solo pueden contener texto normal",
        "form.err.other": "Revise este campo",
        "pipeline.advice": "Las alertas pueden retrasarse: llame también ahora al {phone}.",
        "pipeline.title": "Su reporte quedó registrado, pero las alertas se están retrasando",
        "incident.title": "Agentes en {school}",
        "incident.reported": "Reportado",
        "incident.where": "Dónde",
        "incident.agency": "Agencia indicada",
        "incident.agents": "Agentes",
        "incident.purpose": "Preguntan por",
        "incident.credentials": "Mostraron credenciales",
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
        "incident.notes": "Notas",
        "incident.notes_removed": "notas eliminadas el {date}",
        "incident.followup": "Seguimiento",
        "incident.followup_stale": "Otra persona acaba de cambiar este incidente, así que los "
        "botones de abajo quizá ya no correspondan. Lo que escribió se conserva: envíelo, o "
        "vuelva a cargar la página para ver el incidente como está ahora.",
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
        "error.report_rate": "Esta escuela ya envió {limit} reportes en el último minuto, el "
        "máximo que dooralert acepta a la vez. Espere {seconds} segundos y vuelva a enviar este. "
        "Si hay agentes en la puerta ahora, {call}.",
        "error.submission": "Este formulario no se pudo enviar así (su identificador de envío no "
        "es válido). Revise el reporte y envíelo de nuevo.",
        "call.phone": "llame al {phone}",
        "call.office": "llame a la oficina de seguridad del distrito",
        "error.other_school": "Su sesión es de otra escuela.",
        "error.not_found": "No existe ese incidente.",
        "link.expired": "Este enlace de estado venció. Pida el estado del incidente a la "
        "oficina del distrito, o ábralo desde una alerta más reciente.",
        "link.revoked": "El distrito retiró este enlace de estado. Si todavía debe seguir este "
        "incidente, pida un enlace nuevo a la oficina del distrito.",
        "link.invalid": "Este enlace de estado no es válido: fue alterado, es de otro incidente "
        "o no lo emitió este distrito.",
        "signout.unavailable": "No se pudo cerrar la sesión: el sistema no responde. Inténtelo "
        "de nuevo en un momento; cierre esta ventana si usa una computadora compartida.",
        "error.go_back": "Volver al formulario",
        "reason.required": "obligatorio",
        # The notifier.
        "notify.escalation.prefix": "ESCALADO: ",
        "notify.escalation.headline": "ESCALAMIENTO: esta alerta no ha sido confirmada a "
        "tiempo. Por favor responda ahora.",
        "notify.update.prefix": "ACTUALIZACIÓN: ",
        "notify.update.headline": "ACTUALIZACIÓN: la situación en la puerta ha cambiado. "
        "Detalles actuales abajo.",
        "notify.resolved.prefix": "DESPEJADO: ",
        "notify.resolved.headline": "TODO DESPEJADO: el incidente se ha resuelto. No se "
        "necesita más acción.",
        "notify.reopened.prefix": "AGENTES DE VUELTA: ",
        "notify.reopened.headline": "AGENTES DE VUELTA: se retira el aviso de todo despejado y "
        "el incidente está abierto otra vez. Detalles actuales abajo; si aún no confirmó, por "
        "favor responda ahora.",
        "notify.ack": "Confirmar (usted se encarga)",
        # The district protocol.
        "protocol.always": "Siempre: nunca comparta información de estudiantes ni el estatus "
        "migratorio de nadie.",
        "protocol.none": "Sin documento: no deje entrar a los agentes. Manténgalos afuera y no "
        "permita que hablen con estudiantes ni con el personal.",
        "protocol.administrative_warrant": _DO_NOT_ADMIT_ES,
        "protocol.administrative_subpoena": _DO_NOT_ADMIT_ES,
        "protocol.judicial_warrant": _JUDICIAL_ES,
        "protocol.judicial_subpoena": _JUDICIAL_ES,
        "protocol.court_order": _JUDICIAL_ES,
        "protocol.unknown": "Trate el documento como si no autorizara la entrada hasta que el "
        "departamento legal lo revise. Mantenga a los agentes afuera; pida una copia; no "
        "comparta información de estudiantes ni estatus migratorio.",
        "screen.email": "parece una dirección de correo electrónico",
        "screen.phone": "parece un número de teléfono",
        "screen.date": "parece una fecha (como una fecha de nacimiento)",
        "screen.a_number": "parece un número A (número de registro de extranjero)",
        "screen.ssn": "parece un número de Seguro Social",
        "screen.id_number": "parece un número de pasaporte, visa u otra identificación",
        "screen.immigration": "parece referirse al estatus migratorio de alguien",
        "screen.name": "parece el nombre de una persona",
        "screen.refused": "{what}: dooralert nunca registra datos personales ni estatus "
        "migratorio; quítelo y envíe de nuevo",
        "screen.held_title": "Alerta enviada — se retuvo parte del texto",
        "screen.held_intro": "La alerta salió de inmediato sin el texto de abajo: no se "
        "registró, ni se guardó en los registros, ni se envió por correo.",
        "screen.held_field": "{field}: {what}.",
        "screen.held_help": "Solo usted ve este texto. Quite nombres, datos de contacto, fechas, "
        "números de identificación y todo lo relativo al estatus migratorio, y envíelo como "
        "actualización — o salga de esta página para descartarlo.",
        "screen.held_again": "Este texto todavía {what}: no se envió nada. Corríjalo e intente "
        "de nuevo.",
        "screen.cleaned": "Texto corregido",
        "screen.send_update": "Enviar como actualización",
        "screen.open_incident": "Abrir la página del incidente",
        "screen.notes": "Notas",
        "error.page_not_found": "No hay ninguna página en esta dirección. Revise el enlace o "
        "vuelva al formulario.",
        "error.method": "Esta página no se puede abrir así: solo responde a un formulario. "
        "Vuelva atrás y use los botones de la página.",
        "error.request": "No se pudo leer esta solicitud tal como llegó. Vuelva atrás, recargue "
        "la página e inténtelo de nuevo.",
        "error.internal": "Algo falló de nuestro lado y puede que esto no se haya registrado. "
        "Si hay agentes en la puerta ahora, {call}.",
        "error.followup_invalid": "Esta actualización no se pudo enviar así: no se registró "
        "nada. Vuelva a la página del incidente e inténtelo de nuevo.",
        "error.to_incident": "Volver a la página del incidente",
        "error.unavailable": "No se puede contactar al sistema ahora: no se registró nada. "
        "Si hay agentes en la puerta ahora, {call}.",
        "refused.bad_token": "Este enlace no es válido o venció.",
        "refused.other_incident": "Este enlace es de otro incidente.",
        "refused.not_in_log": "No existe ese incidente.",
        "refused.already_acknowledged": "Esto ya se confirmó. No hace falta nada más.",
        "refused.resolved": "Este incidente ya terminó (todo despejado): no se registró nada más.",
        "refused.open": "Este incidente está abierto: no hay aviso de todo despejado que retirar.",
        "refused.invalid": "No se pudo enviar así: no se registró nada.",
        "refused.key_reused": "Este reporte ya se envió con otros datos. Recargue el formulario "
        "y envíelo otra vez.",
        "incident.not_delivered": "no se pudo entregar",
        "incident.retrying": "reintentando",
        "screen.location_withheld": "(no registrado: retenido por el filtro de privacidad)",
    },
}

# The incident status and acknowledgement pages' words (i18n_status.py, apart for length).
for _language in LANGUAGES:
    MESSAGES[_language] |= STATUS_MESSAGES[_language]
