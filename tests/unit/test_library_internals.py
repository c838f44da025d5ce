"""The private parts of third-party libraries the services use for speed, one test each, as the
code uses them.

pyproject.toml caps nats-py, FastStream, uvicorn and aiosmtplib below their next minor
release because of these. Where the code feature-detects an internal it falls back to the
library's public (slower) path when the internal is gone, so a release that renamed one would
pass every other test and only be slower; where it does not, alerts could stop. Before raising
a cap, install the new version and run this file: a failing case names the internal that
changed (then the benchmarks, README "Benchmarks", for the speed the internal was for).

Real objects throughout, none connected (no server): what is only set up on connect is read
from the source of the library function that sets it up.
"""

from __future__ import annotations

import ast
import asyncio
import email.message
import inspect
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

import aiosmtplib
import aiosmtplib.email
import h11
import pytest
from fastapi.routing import APIRoute
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsMessage
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import MsgAlreadyAckdError
from nats.js import JetStreamContext
from nats.js.kv import KeyValue, _is_key_valid
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from services.cli import http1
from services.eventlog import connection, natsheaders
from services.eventlog.consumer import message_parser
from services.eventlog.pull import HeldPull, _held_pull_works, hold_pulls
from services.eventlog.request import CLIENT_INTERNALS
from services.notifier import main as notifier_main
from services.notifier import wire
from services.notifier.message import _POLICY

Check = Callable[[], Awaitable[None]]
CHECKS: list[Any] = []


def internal(name: str) -> Callable[[Check], Check]:
    """Register a check under `name` (library: internal (where it is used))."""

    def register(check: Check) -> Check:
        CHECKS.append(pytest.param(check, id=name))
        return check

    return register


def assigned(method: Any) -> set[str]:
    """The attributes `self.<name> = ...` assigns in `method` (its source)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                out.add(target.attr)
    return out


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def js_message(nc: Client, **fields: Any) -> Msg:
    return Msg(_client=nc, subject="dooralert.s.i.encounter.reported", data=b"{}", **fields)


# --- nats-py ------------------------------------------------------------------------------


@internal("nats-py: Client._resp_map, _resp_sub_prefix (eventlog/request.py, jetstream.py)")
async def _resp_map() -> None:
    nc = Client()
    assert all(hasattr(nc, name) for name in CLIENT_INTERNALS)  # else Client.request: slower
    assert isinstance(nc._resp_map, dict)
    assert nc._resp_sub_prefix is None  # falsy until _init_request_sub
    assert {"_resp_map", "_resp_sub_prefix"} <= assigned(Client._init_request_sub)


@internal("nats-py: Client._init_request_sub (eventlog/request.py, jetstream.py)")
async def _init_request_sub() -> None:
    assert inspect.iscoroutinefunction(Client._init_request_sub)
    assert params(Client._init_request_sub) == ["self"]


@internal("nats-py: reply tokens of any length routed by _resp_map (request.py 'g', 'p' tokens)")
async def _reply_tokens() -> None:
    # request() and send_together() register short counter tokens ("g1", "p1") under the
    # client's reply prefix: the client's reply handler must route by what follows the prefix.
    nc = Client()
    nc._resp_sub_prefix = bytearray(bytes(nc._inbox_prefix) + b"." + b"N" * 22 + b".")
    answer: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
    nc._resp_map["g7"] = answer
    reply = Msg(_client=nc, subject=nc._resp_sub_prefix.decode() + "g7")
    await nc._request_sub_callback(reply)
    assert answer.done() and answer.result() is reply


@internal("nats-py: Client._send_command queues without writing (notifier/handler.py LazyAcks)")
async def _send_command() -> None:
    nc = Client()
    assert inspect.iscoroutinefunction(Client._send_command)
    assert params(Client._send_command)[:2] == ["self", "cmd"]
    await nc._send_command(b"PUB _INBOX.x 0\r\n\r\n")
    assert nc._pending == [b"PUB _INBOX.x 0\r\n\r\n"]  # in the next write, not one of its own


@internal("nats-py: Client._flush_pending (notifier/handler.py LazyAcks)")
async def _flush_pending() -> None:
    assert inspect.iscoroutinefunction(Client._flush_pending)
    assert params(Client._flush_pending)[0] == "self"
    assert all(
        p.default is not inspect.Parameter.empty
        for p in list(inspect.signature(Client._flush_pending).parameters.values())[1:]
    )


@internal("nats-py: Client._send_unsubscribe (eventlog/pull.py HeldPull._end_requests)")
async def _send_unsubscribe() -> None:
    assert inspect.iscoroutinefunction(Client._send_unsubscribe)
    assert params(Client._send_unsubscribe)[:2] == ["self", "sid"]


@internal("nats-py: Client.stats reconnects, out_msgs (eventlog/pull.py, notifier/handler.py)")
async def _stats() -> None:
    stats = Client().stats
    assert isinstance(stats["reconnects"], int) and isinstance(stats["out_msgs"], int)


@internal("nats-py: Client._server_info (eventlog/direct.py _single_server)")
async def _server_info() -> None:
    assert isinstance(Client()._server_info, dict)


@internal("nats-py: Client._parse_header_lines replaced (eventlog/natsheaders.py)")
async def _parse_header_lines() -> None:
    # services.eventlog installs it on import, when nats-py's own agrees on a sample.
    assert isinstance(inspect.getattr_static(Client, "_parse_header_lines"), staticmethod)
    assert natsheaders.install()
    assert Client._parse_header_lines is natsheaders.parse_header_lines


@internal("nats-py: Msg._ackd, Msg._client (notifier/handler.py LazyAcks)")
async def _msg_ackd_client() -> None:
    nc = Client()
    msg = js_message(nc, reply="$JS.ACK.x")
    assert msg._client is nc and msg._ackd is False
    msg._ackd = True  # what LazyAcks sets once its ack is queued: nats-py's ack then refuses
    with pytest.raises(MsgAlreadyAckdError):
        await msg.ack()


@internal("nats-py: Msg takes attributes of its own (notifier/handler.py prefetch)")
async def _msg_dict() -> None:
    msg = js_message(Client())
    setattr(msg, "_dooralert_record_read", 1)  # noqa: B010 - as handler.py sets it
    assert msg.__dict__.pop("_dooralert_record_read") == 1


@internal("nats-py: PullSubscription._nc, _nms, _deliver, _sub (eventlog/pull.py, reading.py)")
async def _pull_subscription() -> None:
    nc = Client()
    js = JetStreamContext(nc)
    sub = Subscription(nc, id=7, subject="_INBOX.x")
    psub = JetStreamContext.PullSubscription(js, sub, "DOORALERT", "notifier", b"_INBOX.x")
    assert psub._nc is nc and psub._sub is sub
    assert psub._nms == "$JS.API.CONSUMER.MSG.NEXT.DOORALERT.notifier"
    assert psub._deliver == "_INBOX.x"
    assert _held_pull_works(psub)  # else FastStream's fetch loop: slower


@internal("nats-py: Subscription._pending_queue, _pending_size, _id (eventlog/pull.py)")
async def _subscription() -> None:
    sub = Subscription(Client(), id=7, subject="_INBOX.x")
    assert isinstance(sub._pending_queue, asyncio.Queue)
    assert sub._pending_size == 0 and sub._id == 7
    assert inspect.iscoroutinefunction(sub.next_msg)
    assert "timeout" in params(sub.next_msg)


@internal("nats-py: JetStreamContext._prefix, _nc, _timeout (eventlog/request.py direct_last)")
async def _js_context() -> None:
    nc = Client()
    js = JetStreamContext(nc, timeout=3)
    assert js._nc is nc and js._prefix == "$JS.API" and float(js._timeout) == 3.0


@internal("nats-py: KeyValue(...) fields and _get (eventlog/direct.py, notifier/records.py)")
async def _key_value() -> None:
    js = JetStreamContext(Client())
    kv = KeyValue(name="B", stream="KV_B", pre="$KV.B.", js=js, direct=True)
    assert (kv._name, kv._stream, kv._pre, kv._js, kv._direct) == ("B", "KV_B", "$KV.B.", js, True)
    assert inspect.iscoroutinefunction(KeyValue._get)
    assert params(KeyValue._get) == ["self", "key", "revision"]
    # LeaderCheckedKeyValue and ConsistentKeyValue override _get: get() and create() must
    # read through it, or the override (the leader's answer) would be bypassed silently.
    for method in (KeyValue.get, KeyValue.create):
        assert "self._get(" in inspect.getsource(method), method.__name__


@internal("nats-py: nats.js.kv._is_key_valid (notifier/records.py)")
async def _key_valid() -> None:
    assert _is_key_valid("n-0123abcd") and not _is_key_valid("a b") and not _is_key_valid("")


# --- FastStream ---------------------------------------------------------------------------


def _broker() -> NatsBroker:
    return NatsBroker("nats://127.0.0.1:1", apply_types=False)


def _router_subscriber() -> Any:
    """A pull subscriber as the router's (services/router/main.py)."""
    return _broker().subscriber(
        "dooralert.>",
        stream=JStream("DOORALERT", declare=False),
        durable="router",
        pull_sub=PullSub(batch_size=64, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
    )


def _notifier_subscriber() -> Any:
    """A concurrent pull subscriber as the notifier's (services/notifier/main.py)."""
    return _broker().subscriber(
        "dooralert.*.*.notification.requested",
        stream=JStream("DOORALERT", declare=False),
        durable="notifier",
        pull_sub=PullSub(batch_size=4, timeout=1.0),
        max_workers=4,
        ack_policy=AckPolicy.MANUAL,
    )


async def _nothing(msg: Msg) -> None:
    return None


@internal("faststream: PullStreamSubscriber._consume_pull, subscription (eventlog/pull.py)")
async def _consume_pull() -> None:
    for subscriber in (_router_subscriber(), _notifier_subscriber()):
        kind = type(subscriber)
        assert params(kind._consume_pull) == ["self", "cb"]
        assert subscriber.subscription is None  # set when bound
        # Looked up when the subscription is made, so the one hold_pulls sets is what runs.
        assert "self._consume_pull" in inspect.getsource(kind._create_subscription)
        assert hold_pulls(subscriber, HeldPull(_nothing, capacity=2, name=kind.__name__))
        assert subscriber._consume_pull is not inspect.getattr_static(kind, "_consume_pull")


@internal("faststream: ConcurrentMixin._put_msg, limiter (notifier/main.py _prefetch_records)")
async def _put_msg() -> None:
    subscriber = _notifier_subscriber()
    kind = type(subscriber)
    assert isinstance(subscriber.limiter.value, int)
    assert params(kind._put_msg) == ["self", "msg"]
    assert "self._put_msg" in inspect.getsource(kind._create_subscription)

    class Prefetching:
        def prefetch(self, raw: Msg) -> None:
            return None

    notifier_main._prefetch_records(subscriber, Prefetching())  # type: ignore[arg-type]
    assert subscriber._put_msg is not inspect.getattr_static(kind, "_put_msg")


@internal("faststream: NatsMessage(...) keywords (eventlog/consumer.py message_parser)")
async def _nats_message() -> None:
    raw = js_message(Client(), reply="$JS.ACK.x", headers={"correlation_id": "c"})
    msg = await message_parser(raw)
    assert isinstance(msg, NatsMessage)
    assert msg.raw_message is raw and msg.body == b"{}" and msg.correlation_id == "c"


@internal("faststream: UNRECOVERABLE_CONNECT_ERRORS mirrored (eventlog/connection.py)")
async def _unrecoverable() -> None:
    from faststream.nats.broker.broker import UNRECOVERABLE_CONNECT_ERRORS

    assert set(UNRECOVERABLE_CONNECT_ERRORS) == connection._UNRECOVERABLE


# --- uvicorn (and h11) --------------------------------------------------------------------


async def _asgi(scope: Any, receive: Any, send: Any) -> None:
    return None


def _config() -> Config:
    config = Config(app=_asgi, log_config=None)
    config.load()
    return config


@internal("uvicorn: H11Protocol.__init__ and .conn (cli/http1.py OneWriteH11Protocol)")
async def _h11_protocol() -> None:
    assert params(H11Protocol.__init__) == ["self", "config", "server_state", "app_state", "_loop"]
    assert "conn" in assigned(H11Protocol.__init__)
    # Every response byte goes through self.conn.send, so the held head goes out with the body.
    assert "self.conn.send(" in inspect.getsource(H11Protocol)
    protocol = http1.OneWriteH11Protocol(_config(), ServerState(), {})
    assert isinstance(protocol.conn, http1.OneWriteConnection)
    assert isinstance(protocol.conn, h11.Connection)
    assert hasattr(_config(), "h11_max_incomplete_event_size")


@internal("uvicorn: HttpToolsProtocol hooks, cycle (cli/http1.py OneWriteHttpToolsProtocol)")
async def _httptools_protocol() -> None:
    if not http1.HTTPTOOLS:
        pytest.skip("httptools is not installed (the h11 protocol serves the intake)")
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert params(HttpToolsProtocol.__init__) == [
        "self",
        "config",
        "server_state",
        "app_state",
        "_loop",
    ]
    for name in ("data_received", "on_message_begin", "on_body", "on_headers_complete"):
        assert callable(getattr(HttpToolsProtocol, name)), name
    assert params(HttpToolsProtocol.send_400_response) == ["self", "msg"]
    assert {"cycle", "transport"} <= assigned(HttpToolsProtocol.connection_made) | assigned(
        HttpToolsProtocol.__init__
    )
    assert "logger" in assigned(HttpToolsProtocol.__init__)
    assert "cycle" in assigned(HttpToolsProtocol.on_headers_complete)
    protocol = http1.OneWriteHttpToolsProtocol(_config(), ServerState(), {})
    assert protocol.max_head_size == http1.MAX_HEAD_SIZE


@internal("uvicorn: RequestResponseCycle transport, on_response, response_started, chunked")
async def _request_response_cycle() -> None:
    if not http1.HTTPTOOLS:
        pytest.skip("httptools is not installed (the h11 protocol serves the intake)")
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    assert {"transport", "on_response"} <= set(params(RequestResponseCycle.__init__))
    fields = assigned(RequestResponseCycle.__init__)
    assert {"transport", "on_response", "response_started", "chunked_encoding"} <= fields
    source = inspect.getsource(RequestResponseCycle)
    # The head and body go out through cycle.transport.write, and the end through on_response:
    # what http1._OneWriteTransport puts in their place.
    assert "self.transport.write(" in source and "self.on_response()" in source


# --- aiosmtplib ---------------------------------------------------------------------------


@internal("aiosmtplib: aiosmtplib.email helpers (notifier/smtp.py)")
async def _aiosmtplib_email() -> None:
    module = aiosmtplib.email
    assert params(module.extract_recipients) == ["message"]
    assert params(module.extract_sender) == ["message"]
    assert params(module.flatten_message) == ["message", "utf8", "cte_type"]
    assert module.quote_address("a@example.org") == "<a@example.org>"


@internal("aiosmtplib: SMTP.transport taken over, esmtp_extensions (notifier/smtp.py _Wire)")
async def _aiosmtplib_transport() -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=1)
    assert smtp.transport is None and smtp.protocol is None  # set by connect()
    assert {"transport", "protocol"} <= assigned(aiosmtplib.SMTP.connect) | assigned(
        aiosmtplib.SMTP._create_connection
    )
    assert isinstance(smtp.esmtp_extensions, dict)
    assert isinstance(smtp.is_ehlo_or_helo_needed, bool)
    assert callable(smtp.supports_extension)
    assert aiosmtplib.SMTPResponse(250, "ok").code == 250


# --- the email package (the standard library: the Python version, not a pin) --------------


@internal("email: Message._headers, _payload (notifier/wire.py _shape, _text)")
async def _message_fields() -> None:
    msg = email.message.EmailMessage()
    msg["Subject"] = "x"
    msg.set_content("body\n")
    assert msg._headers[0] == ("Subject", msg["Subject"])  # type: ignore[attr-defined]
    assert msg._payload == msg.get_payload()  # type: ignore[attr-defined]
    assert wire.wire_bytes(msg) is not None


@internal("email: header objects take attributes (notifier/message.py _FoldOnceHeader)")
async def _header_dict() -> None:
    header = _POLICY.header_factory("Subject", "x")
    assert header.fold(policy=wire.POLICY) == "Subject: x\r\n"
    assert header.__dict__["_dooralert_folded"]


# --- FastAPI ------------------------------------------------------------------------------


@internal("fastapi: APIRoute builds its app from get_route_handler (intake/api.py DirectRoute)")
async def _get_route_handler() -> None:
    assert "self.get_route_handler()" in inspect.getsource(APIRoute.__init__)


@pytest.mark.parametrize("check", CHECKS)
async def test_library_internal(check: Check) -> None:
    await check()
