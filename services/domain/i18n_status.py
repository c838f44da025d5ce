"""The incident status and acknowledgement pages' words, in English and Spanish (pure data).

Merged into `MESSAGES` by services/domain/i18n.py; kept apart only for length. Roles inside
a sentence carry their article (and in Spanish the preposition "a" contracted: "al"), since
the article differs per role and language.
"""

from __future__ import annotations

STATUS_MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "and": "and",
        "time.format": "%-I:%M %p",
        "date.format": "%Y-%m-%d %-I:%M %p %Z",
        # A role as the object of "to" and of "by".
        "to.law": "the law department",
        "to.safety": "the safety office",
        "to.leadership": "district leadership",
        "to.principal": "the principal",
        "to.family_liaison": "the family liaison",
        "by.law": "the law department",
        "by.safety": "the safety office",
        "by.leadership": "district leadership",
        "by.principal": "the principal",
        "by.family_liaison": "the family liaison",
        "banner.received": "Report received at {time}. Sending the alert now…",
        "banner.sent": "Alert sent at {time} to {whom}.",
        "banner.sent_waiting": "Alert sent at {time} to {whom} — waiting for them to confirm.",
        "banner.confirmed": "Confirmed by {who} at {time}.",
        "banner.all_confirmed": "Everyone who must confirm has confirmed.",
        "banner.keep_outside": "Keep the agents outside.",
        "banner.call_if": "No confirmation in {minutes} minutes? Call {phone}.",
        "banner.delayed": "Sending is delayed — call {phone} now.",
        "banner.resolved": "All clear at {time}.",
        "banner.office": "the district safety office",
        "incident.arrived": "Agents arrived",
        "incident.sent_at": "sent {time}",
        "incident.details_later": "A document was shown, or the agents moved",
        "incident.record_details": "Send this update",
        "kind.alert": "Alert",
        "kind.update": "Update",
        "kind.resolved": "All clear",
        "kind.escalation": "Escalation",
        "kind.pattern": "Pattern alert",
        "confirm.resolve.title": "Send the all clear?",
        "confirm.resolve.text": "Everyone alerted will be told that the incident is over and "
        "no further action is needed. Only send it once the agents have gone.",
        "confirm.agents_left.title": "Tell everyone the agents have left?",
        "confirm.agents_left.text": "Everyone alerted will get an update. If they come back, "
        "press “The agents are back” on the incident page.",
        "confirm.agents_back.title": "Tell everyone the agents are back?",
        "confirm.agents_back.text": "Everyone alerted will get an update: the agents are at "
        "the door again, kept outside. Correct the details on the incident page if they differ.",
        "confirm.reopen.title": "Withdraw the all clear?",
        "confirm.reopen.text": "The incident opens again: everyone alerted is told the agents "
        "are back, and whoever has not confirmed yet is asked again and escalated as before.",
        "incident.agents_back": "The agents are back",
        "incident.reopen": "Agents are back / reopen",
        "incident.reopen_hint": "All clear was sent. If the agents came back, or it was sent by "
        "mistake, open the incident again.",
        "incident.reopened": "Open again since {time}: the all clear was withdrawn.",
        "kind.reopened": "Agents back",
        "confirm.yes": "Yes, send it",
        "confirm.no": "No, go back",
        "ack.title": "Confirm you have seen this alert",
        "ack.heading": "Agents at {school}",
        "ack.press": "Press the button to tell the district you have seen this alert and are "
        "handling it.",
        "ack.button": "I confirm",
        "ack.thanks": "Thank you. Your confirmation is recorded.",
        "ack.others": "Already confirmed",
        "ack.nobody": "Nobody has confirmed yet.",
        "ack.open": "Open the incident page",
        "ack.reported": "Reported",
        "ack.expired": "This confirmation link has expired. Call {phone} to confirm instead.",
        "ack.invalid": "This confirmation link is not valid: it was altered or cut short, or "
        "was not issued by this district. Open the link from the alert again, or call {phone}.",
        "ack.other_incident": "This confirmation link is for another incident.",
        "ack.not_in_log": "The incident this confirmation link names could not be found. Call "
        "{phone}.",
        "ack.used": "You have already confirmed this alert with this link. Nothing more is needed.",
        "ack.resolved": "This incident is over (all clear). No confirmation is needed.",
        "error.origin": "This confirmation came from another site and was not recorded. Open "
        "the link from the alert again.",
    },
    "es": {
        "and": "y",
        "time.format": "%H:%M",
        "date.format": "%Y-%m-%d %H:%M %Z",
        "to.law": "al departamento legal",
        "to.safety": "a la oficina de seguridad",
        "to.leadership": "a la dirección del distrito",
        "to.principal": "a la dirección de la escuela",
        "to.family_liaison": "al enlace con las familias",
        "by.law": "el departamento legal",
        "by.safety": "la oficina de seguridad",
        "by.leadership": "la dirección del distrito",
        "by.principal": "la dirección de la escuela",
        "by.family_liaison": "el enlace con las familias",
        "banner.received": "Reporte recibido a las {time}. Enviando la alerta ahora…",
        "banner.sent": "Alerta enviada a las {time} {whom}.",
        "banner.sent_waiting": "Alerta enviada a las {time} {whom}; esperando su confirmación.",
        "banner.confirmed": "Confirmado por {who} a las {time}.",
        "banner.all_confirmed": "Todos los que deben confirmar ya confirmaron.",
        "banner.keep_outside": "Mantenga a los agentes afuera.",
        "banner.call_if": "¿Sin confirmación en {minutes} minutos? Llame al {phone}.",
        "banner.delayed": "El envío se está retrasando: llame ahora al {phone}.",
        "banner.resolved": "Todo despejado a las {time}.",
        "banner.office": "la oficina de seguridad del distrito",
        "incident.arrived": "Llegada de los agentes",
        "incident.sent_at": "enviado {time}",
        "incident.details_later": "Mostraron un documento, o los agentes se movieron",
        "incident.record_details": "Enviar esta actualización",
        "kind.alert": "Alerta",
        "kind.update": "Actualización",
        "kind.resolved": "Todo despejado",
        "kind.escalation": "Escalamiento",
        "kind.pattern": "Alerta de patrón",
        "confirm.resolve.title": "¿Enviar el aviso de todo despejado?",
        "confirm.resolve.text": "Todos los avisados sabrán que el incidente terminó y que no "
        "se necesita más acción. Envíelo solo cuando los agentes se hayan ido.",
        "confirm.agents_left.title": "¿Avisar a todos que los agentes se fueron?",
        "confirm.agents_left.text": "Todos los avisados recibirán una actualización. Si "
        "vuelven, pulse «Los agentes volvieron» en la página del incidente.",
        "confirm.agents_back.title": "¿Avisar a todos que los agentes volvieron?",
        "confirm.agents_back.text": "Todos los avisados recibirán una actualización: los "
        "agentes están otra vez en la puerta, afuera. Corrija los detalles en la página del "
        "incidente si son otros.",
        "confirm.reopen.title": "¿Retirar el aviso de todo despejado?",
        "confirm.reopen.text": "El incidente se abre otra vez: todos los avisados sabrán que "
        "los agentes volvieron, y a quien aún no confirmó se le pide otra vez y se escala como "
        "antes.",
        "incident.agents_back": "Los agentes volvieron",
        "incident.reopen": "Los agentes volvieron / reabrir",
        "incident.reopen_hint": "Se envió el aviso de todo despejado. Si los agentes volvieron, "
        "o se envió por error, abra el incidente otra vez.",
        "incident.reopened": "Abierto otra vez desde las {time}: se retiró el aviso de todo "
        "despejado.",
        "kind.reopened": "Agentes de vuelta",
        "confirm.yes": "Sí, enviarlo",
        "confirm.no": "No, volver",
        "ack.title": "Confirme que vio esta alerta",
        "ack.heading": "Agentes en {school}",
        "ack.press": "Pulse el botón para avisar al distrito que vio esta alerta y que se está "
        "encargando.",
        "ack.button": "Confirmo",
        "ack.thanks": "Gracias. Su confirmación quedó registrada.",
        "ack.others": "Ya confirmaron",
        "ack.nobody": "Nadie ha confirmado todavía.",
        "ack.open": "Abrir la página del incidente",
        "ack.reported": "Reportado",
        "ack.expired": "Este enlace de confirmación venció. Llame al {phone} para confirmar.",
        "ack.invalid": "Este enlace de confirmación no es válido: fue alterado o cortado, o no "
        "lo emitió este distrito. Abra otra vez el enlace de la alerta, o llame al {phone}.",
        "ack.other_incident": "Este enlace de confirmación es de otro incidente.",
        "ack.not_in_log": "No se encontró el incidente de este enlace de confirmación. Llame al "
        "{phone}.",
        "ack.used": "Ya confirmó esta alerta con este enlace. No hace falta nada más.",
        "ack.resolved": "Este incidente terminó (todo despejado). No hace falta confirmar.",
        "error.origin": "Esta confirmación llegó desde otro sitio y no se registró. Abra otra "
        "vez el enlace de la alerta.",
    },
}
