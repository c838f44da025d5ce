"""The intake HTTP service: API, staff form, incident status. Entry points stay thin."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.events import (
    EncounterReported,
    EncounterUpdated,
    EncounterUpdatedData,
    Event,
    IncidentAcknowledged,
    IncidentAcknowledgedData,
    IncidentResolved,
    IncidentResolvedData,
    derive_id,
    new_event_id,
    parse_event,
)
from schemas.report import TOKEN_PATTERN, EncounterReport
from services.domain.directory import Directory, School
from services.domain.incident import IncidentState, fold
from services.domain.protocol import load_protocol
from services.domain.tokens import TokenError, check_view_token, read_ack_token, view_token
from services.eventlog import (
    SUBJECT_PREFIX,
    connect,
    get_last,
    publish_event,
    read_incident,
)
from services.intake.pages import Core, install_pages
from services.intake.reports import (
    ReportInvalid,
    encounter_event,
    field_errors,
    incident_id_for,
    parse_report,
    same_report,
)
from services.intake.security import RateLimiter, SecurityHeaders
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("dooralert.intake")
STATIC = Path(__file__).parent / "static"


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class Unavailable(Exception):
    """The event log could not be reached; nothing was recorded."""


def _actor(key: str) -> str:
    # Pseudonymous: which key acted, never the key itself.
    return "intake-key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class AckRequest(BaseModel):
    """An acknowledgement through the API: the token from the alert's link."""

    token: str


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """The request body in OpenAPI (the handlers read raw bytes to answer bad JSON with 422)."""
    schema = model.model_json_schema()
    schema = _inline(schema, schema.get("$defs", {}))
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


def create_app(settings: Settings, *, directory: Directory) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nc: Client = await connect(settings.nats_url, name="dooralert-intake")
        state["nc"], state["js"] = nc, nc.jetstream()
        log.info("intake.started", url=settings.base_url)
        try:
            yield
        finally:
            await nc.drain()

    app = FastAPI(
        title="dooralert intake",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    secret = settings.secret_key.get_secret_value()
    protocol = load_protocol(settings.config_dir)
    school_limiter = RateLimiter(settings.rate_limit_school_per_minute)
    client_limiter = RateLimiter(settings.rate_limit_client_per_minute)

    def limit(*, school_id: str | None, client: str) -> float:
        """0 if this write may go ahead; else the seconds to wait (nothing is recorded)."""
        wait = client_limiter.take(client)
        if not wait and school_id is not None:
            wait = school_limiter.take(school_id)
        if wait:
            log.warning("intake.rate_limited", school=school_id)
        return wait

    def api_limit(request: Request, school_id: str | None) -> None:
        wait = limit(school_id=school_id, client=request.client.host if request.client else "-")
        if wait:
            phone = directory.district.emergency_phone
            raise ApiError(
                429,
                f"too many requests; retry in {int(wait) + 1} s"
                + (f" (emergency: call {phone})" if phone else ""),
                retry_after=int(wait) + 1,
            )

    def js() -> JetStreamContext:
        return state["js"]  # type: ignore[no-any-return]

    # --- core ----------------------------------------------------------------------------

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_report_bytes:
            raise ApiError(413, f"report larger than {settings.max_report_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_report_bytes:
                raise ApiError(413, f"report larger than {settings.max_report_bytes} bytes")
        return bytes(body)

    def authorise(key: str | None) -> School:
        if not key:
            raise ApiError(401, "missing intake key: send Authorization: Bearer <key>")
        school = directory.school_for_key(key)
        if school is None:
            raise ApiError(401, "intake key not recognised")
        return school

    async def accept(
        raw: Any, *, school: School, actor: str, idempotency_key: str | None
    ) -> tuple[str, bool]:
        """Record one report. Returns (incident id, whether it is new)."""
        if isinstance(raw, dict) and "school_id" in raw and raw["school_id"] != school.id:
            raise ApiError(403, f"this intake key is for school {school.id!r} only")
        now = datetime.now(UTC)
        report = parse_report(raw, now=now)
        incident_id = incident_id_for(school.id, idempotency_key)
        event = encounter_event(report, incident_id=incident_id, actor=actor, now=now)
        subject = f"{SUBJECT_PREFIX}.{school.id}.{incident_id}.encounter.reported"
        had_time = isinstance(raw, dict) and raw.get("occurred_at") is not None

        async def check_stored() -> bool:
            """Whether this incident's report is stored; 409 if it is a different report."""
            stored = await get_last(js(), subject, retry_for=settings.publish_retry_seconds)
            if stored is None:
                return False
            prior = parse_event(stored)
            if not isinstance(prior, EncounterReported) or not same_report(
                prior.data, report, new_had_time=had_time
            ):
                raise ApiError(409, "Idempotency-Key already used for a different report")
            return True

        try:
            if idempotency_key and await check_stored():
                return incident_id, False
            ack = await publish_event(
                js(),
                event,
                timeout=settings.publish_timeout_seconds,
                retry_for=settings.publish_retry_seconds,
            )
            if ack.duplicate and idempotency_key:
                # Lost a race with a concurrent request under the same key: same answer as
                # if it had come first (a different report under that key gets 409).
                await check_stored()
        except ApiError:
            raise
        except Exception as exc:
            log.error("report.not_recorded", school=school.id, error=type(exc).__name__)
            raise Unavailable from exc
        log.info(
            "encounter.reported",
            incident=incident_id,
            school=school.id,
            seq=ack.seq,
            duplicate=bool(ack.duplicate),
        )
        return incident_id, not ack.duplicate

    async def project(incident_id: str) -> IncidentState | None:
        if not re.fullmatch(TOKEN_PATTERN, incident_id):
            return None  # not an id dooralert makes (and a "." or "*" would widen the subject)
        try:
            return fold(await read_incident(js(), incident_id))
        except Exception as exc:
            raise Unavailable from exc

    def urls(incident_id: str) -> dict[str, str]:
        token = view_token(secret, incident_id)
        return {
            "status_url": f"{settings.base_url}/api/v1/incidents/{incident_id}?token={token}",
            "page_url": f"{settings.base_url}/incidents/{incident_id}?token={token}",
        }

    # --- errors --------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 429:
            headers = {"Retry-After": str(exc.extra.get("retry_after", 60))}
        return JSONResponse({"error": exc.message, **exc.extra}, exc.status, headers=headers)

    @app.exception_handler(ReportInvalid)
    async def _invalid(_: Request, exc: ReportInvalid) -> JSONResponse:
        return JSONResponse({"error": "invalid report", "fields": exc.fields}, 422)

    @app.exception_handler(Unavailable)
    async def _unavailable(_: Request, __: Unavailable) -> JSONResponse:
        phone = directory.district.emergency_phone
        msg = "the event log is unreachable; nothing was recorded. Call the law department"
        return JSONResponse({"error": msg + (f" at {phone}" if phone else "")}, 503)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid request", "fields": fields}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("intake.unexpected_error")
        return JSONResponse({"error": "internal error; nothing may have been recorded"}, 500)

    # --- API -----------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        nc: Client | None = state.get("nc")
        ok = bool(nc and nc.is_connected)
        return JSONResponse({"status": "ok" if ok else "degraded", "nats": ok}, 200 if ok else 503)

    @app.post("/api/v1/encounters", status_code=202, openapi_extra=_body(EncounterReport))
    async def post_encounter(request: Request) -> JSONResponse:
        key = _bearer(request)
        school = authorise(key)
        api_limit(request, school.id)
        body = await read_body(request)
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ReportInvalid([{"field": "(body)", "reason": f"not valid JSON: {exc}"}]) from None
        idem = request.headers.get("idempotency-key")
        if idem is not None and not (1 <= len(idem) <= 200 and idem.isprintable()):
            raise ReportInvalid(
                [{"field": "Idempotency-Key", "reason": "1-200 printable characters"}]
            )
        assert key is not None
        incident_id, created = await accept(
            raw, school=school, actor=_actor(key), idempotency_key=idem
        )
        return JSONResponse(
            {"incident_id": incident_id, "created": created, **urls(incident_id)}, 202
        )

    @app.get("/api/v1/incidents/{incident_id}")
    async def get_incident(incident_id: str, request: Request, token: str | None = None) -> Any:
        state_ = await authorised_incident(request, incident_id, token)
        return JSONResponse(state_.model_dump(mode="json"))

    # --- follow-ups and acknowledgements -------------------------------------------------

    async def append(event: Event) -> None:
        try:
            await publish_event(
                js(),
                event,
                timeout=settings.publish_timeout_seconds,
                retry_for=settings.publish_retry_seconds,
            )
        except Exception as exc:
            raise Unavailable from exc

    async def staff_incident(
        request: Request, incident_id: str, key: str | None
    ) -> tuple[IncidentState, str]:
        school = authorise(key)
        incident = await project(incident_id)
        if incident is None:
            raise ApiError(404, "no such incident")
        if incident.school_id != school.id:
            raise ApiError(403, "this intake key is for another school")
        assert key is not None
        return incident, key

    def envelope(incident: IncidentState, *, actor: str, now: datetime) -> dict[str, Any]:
        return {
            "source": "intake",
            "incident_id": incident.incident_id,
            "school_id": incident.school_id,
            "occurred_at": now,
            "recorded_at": now,
            "correlation_id": incident.incident_id,
            "actor": actor,
        }

    async def follow_up(incident: IncidentState, actor: str, raw: Any, *, resolve: bool) -> str:
        if incident.status == "resolved":
            raise ApiError(409, "the incident is already resolved")
        now = datetime.now(UTC)
        model = IncidentResolvedData if resolve else EncounterUpdatedData
        try:
            data = model.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            raise ReportInvalid(field_errors(exc)) from None
        if not resolve and not data.model_dump(exclude_none=True):
            raise ReportInvalid([{"field": "(body)", "reason": "nothing changed"}])
        cls = IncidentResolved if resolve else EncounterUpdated
        event = cls(
            id=new_event_id(),
            data=data,  # type: ignore[arg-type]
            **envelope(incident, actor=actor, now=now),
        )
        await append(event)
        log.info(event.type, incident=incident.incident_id, school=incident.school_id)
        return event.id

    async def json_body(request: Request) -> Any:
        body = await read_body(request)
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ReportInvalid([{"field": "(body)", "reason": f"not valid JSON: {exc}"}]) from None

    @app.post(
        "/api/v1/incidents/{incident_id}/updates",
        status_code=202,
        openapi_extra=_body(EncounterUpdatedData),
    )
    async def post_update(incident_id: str, request: Request) -> JSONResponse:
        incident, key = await staff_incident(request, incident_id, _bearer(request))
        api_limit(request, incident.school_id)
        event_id = await follow_up(incident, _actor(key), await json_body(request), resolve=False)
        return JSONResponse({"incident_id": incident_id, "event_id": event_id}, 202)

    @app.post(
        "/api/v1/incidents/{incident_id}/resolve",
        status_code=202,
        openapi_extra=_body(IncidentResolvedData, required=False),
    )
    async def post_resolve(incident_id: str, request: Request) -> JSONResponse:
        incident, key = await staff_incident(request, incident_id, _bearer(request))
        api_limit(request, incident.school_id)
        event_id = await follow_up(incident, _actor(key), await json_body(request), resolve=True)
        return JSONResponse({"incident_id": incident_id, "event_id": event_id}, 202)

    async def acknowledge(token: str, *, via: str, record: bool) -> tuple[int, str, str | None]:
        """Check an ack token; record the ack when asked. (status, message, incident id)."""
        now = datetime.now(UTC)
        try:
            claim = read_ack_token(secret, token, now=now)
        except TokenError as exc:
            return 400, str(exc), None
        incident = await project(claim.incident_id)
        if incident is None or incident.school_id != claim.school_id:
            return 404, "this incident is not in the log", None
        if any(
            a.role == claim.role and a.contact_id == claim.contact_id
            for a in incident.acknowledgements
        ):
            return 409, "already acknowledged: this link has been used", incident.incident_id
        if incident.status == "resolved":
            return (
                409,
                "the incident has been resolved; no acknowledgement needed",
                incident.incident_id,
            )
        if not record:
            return 200, "confirm", incident.incident_id
        event = IncidentAcknowledged(
            id=derive_id(incident.incident_id, "acknowledged", claim.role, claim.contact_id),
            data=IncidentAcknowledgedData(
                role=claim.role,
                contact_id=claim.contact_id,
                notification_id=claim.notification_id,
                via=via,
            ),  # type: ignore[arg-type]
            **envelope(incident, actor=f"contact:{claim.contact_id}", now=now),
        )
        await append(event)
        log.info(
            "incident.acknowledged",
            incident=incident.incident_id,
            role=claim.role,
            contact=claim.contact_id,
            via=via,
        )
        return 202, "acknowledged", incident.incident_id

    @app.post(
        "/api/v1/incidents/{incident_id}/ack", status_code=202, openapi_extra=_body(AckRequest)
    )
    async def post_ack(incident_id: str, request: Request) -> JSONResponse:
        raw = await json_body(request)
        token = raw.get("token") if isinstance(raw, dict) else None
        if not isinstance(token, str):
            raise ReportInvalid([{"field": "token", "reason": "required"}])
        try:
            claim = read_ack_token(secret, token, now=datetime.now(UTC))
        except TokenError as exc:
            raise ApiError(400, str(exc)) from None
        if claim.incident_id != incident_id:
            raise ApiError(400, "the token is for another incident")  # and nothing is recorded
        status, message, _ = await acknowledge(token, via="api", record=True)
        if status >= 400:
            raise ApiError(status, message)
        return JSONResponse({"incident_id": incident_id, "status": message}, status)

    async def authorised_incident(
        request: Request, incident_id: str, token: str | None
    ) -> IncidentState:
        key = _bearer(request)
        by_token = check_view_token(secret, incident_id, token)
        if not key and not by_token:
            raise ApiError(401, "send the school's intake key or the link's token")
        # A key is checked before the log is read: a wrong key learns nothing, costs nothing.
        school = None if by_token else authorise(key)
        incident = await project(incident_id)
        if incident is None:
            raise ApiError(404, "no such incident")
        if school is not None and school.id != incident.school_id:
            raise ApiError(403, "this intake key is for another school")
        return incident

    # --- HTML ----------------------------------------------------------------------------

    install_pages(
        app,
        settings=settings,
        directory=directory,
        protocol=protocol,
        core=Core(
            accept=accept,
            project=project,
            follow_up=follow_up,
            urls=urls,
            read_body=read_body,
            limit=limit,
            acknowledge=acknowledge,
            api_error=ApiError,
            unavailable=Unavailable,
        ),
    )
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(SecurityHeaders)
    return app
