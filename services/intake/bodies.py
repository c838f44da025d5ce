"""Reading request bodies within the size limit, and declaring them in the OpenAPI document.

The handlers read raw bytes (not FastAPI body models) so that malformed JSON is answered
with the API's own 422 shape, never a 500.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from pydantic import BaseModel

from services.intake.errors import ApiError, ReportInvalid


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The whole body; 413 as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"report larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, f"report larger than {max_bytes} bytes")
    return bytes(body)


def parse_json(body: bytes) -> Any:
    """The body's JSON; 422 naming the body if it is not JSON."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ReportInvalid([{"field": "(body)", "reason": f"not valid JSON: {exc}"}]) from None


async def json_body(request: Request, *, max_bytes: int) -> Any:
    """The body's JSON, or None for an empty body."""
    body = await read_body(request, max_bytes=max_bytes)
    if not body.strip():
        return None
    return parse_json(body)


async def form_values(request: Request, *, max_bytes: int) -> dict[str, str]:
    """A form POST's fields (the last value of a repeated field wins)."""
    body = await read_body(request, max_bytes=max_bytes)
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def body_schema(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` declaring `model` as the JSON request body (its $defs inlined)."""
    schema = model.model_json_schema()
    schema = _inline(schema, schema.get("$defs", {}))
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }
