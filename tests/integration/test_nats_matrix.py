"""deploy/nats/permissions.yaml on a real nats-server started with deploy/nats/server.conf: every
row (a JetStream API verb or a subject) tried as every user gets exactly the matrix's answer.

A denial is the server's "Permissions Violation" (-ERR), which nats-py hands to the error
callback; the server sends it before the PONG of the flush that follows the attempt, so one
flush tells allowed from denied without waiting out a timeout.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import nats
import pytest
import yaml
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from schemas.events import EVENT_MODELS
from services.eventlog import provision
from services.eventlog.connection import inbox_prefix
from services.eventlog.contract import (
    DELIVERIES_BUCKET,
    NOTE_KEYS_BUCKET,
    SESSIONS_BUCKET,
    consumer_configs,
    stream_configs,
)
from tests.integration.test_nats_permissions import USERS as CONFIGURED_USERS
from tests.integration.test_nats_permissions import ConfiguredNatsServer
from tests.support import REPO

MATRIX = REPO / "deploy" / "nats" / "permissions.yaml"
API = "$JS.API"
DURABLES = {c.durable_name: (stream, c) for stream, c in consumer_configs()}
# How long a plain publish (no reply) waits for a violation before it counts as allowed.
PLAIN_WAIT = 0.25
READ_FILTERS = {
    "DOORALERT": "dooralert.>",
    "DOORALERT_CHECKPOINTS": "dooralert_checkpoints.>",
    "DOORALERT_TIMERS": "dooralert_timers.>",
}
# Verbs that change what the services depend on: after one is allowed, provision afresh.
_CHANGES = "create create-filtered durable-create create-nameless update delete pause reset"
DESTRUCTIVE = {"stream.delete", *(f"consumer.{verb}" for verb in _CHANGES.split())}
# Verbs whose request should also succeed when allowed (not merely escape a violation).
_READS = "info next throwaway-create throwaway-create-nofilter throwaway-next throwaway-delete"
SUCCEED = {"publish", "account.info", "stream.info", "consumer.fresh-durable"} | {
    f"consumer.{verb}" for verb in _READS.split()
}


@dataclass(frozen=True)
class Case:
    verb: str
    target: str
    allowed: dict[str, bool]

    @property
    def name(self) -> str:
        return f"{self.verb} {self.target}"


def load_matrix() -> tuple[list[str], list[Case]]:
    """The users and the rows of deploy/nats/permissions.yaml."""
    raw = yaml.safe_load(MATRIX.read_text())
    users: list[str] = raw["users"]
    cases = []
    for key, answers in raw["cases"].items():
        assert len(answers) == len(users) and set(answers) <= {"allow", "deny"}, key
        verb, target = key.split(" ", 1)
        cases.append(
            Case(verb, target, {u: a == "allow" for u, a in zip(users, answers, strict=True)})
        )
    return users, cases


USERS, CASES = load_matrix()


def test_the_matrix_covers_every_event_type_durable_and_stream() -> None:
    names = {c.name for c in CASES}
    for event_type in EVENT_MODELS:
        assert f"publish dooralert.s.i.{event_type}" in names, event_type
    buckets = [f"KV_{DELIVERIES_BUCKET}", f"KV_{SESSIONS_BUCKET}", f"KV_{NOTE_KEYS_BUCKET}"]
    streams = [s.name for s in stream_configs()] + buckets
    for stream in streams:
        for verb in ("update", "delete", "purge", "msg-delete", "info"):
            assert f"stream.{verb} {stream}" in names, (verb, stream)
    for durable, (stream, _) in DURABLES.items():
        for verb in (*_CHANGES.split(), "unpause", "info", "next", "ack"):
            assert f"consumer.{verb} {stream}/{durable}" in names, (verb, durable)
    assert sorted(USERS) == sorted(CONFIGURED_USERS)
    # Nobody but admin may change a service's durable consumer, whatever the verb.
    for case in CASES:
        if case.verb in DESTRUCTIVE | {"consumer.unpause"}:
            assert [u for u, ok in case.allowed.items() if ok] == ["admin"], case.name


@dataclass
class Answer:
    violation: str | None
    reply: str  # what the server answered, for the failure message


class Prober:
    """One user's connection: tries one request at a time and reports a violation, if any."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc, self.errors = nc, errors

    async def attempt(
        self, subject: str, payload: bytes = b"", *, reply: str | None = None, wait: bool = True
    ) -> Answer:
        await self.nc.flush()
        self.errors.clear()
        if reply is not None or not wait:
            # Nothing answers a plain publish: give a violation time to arrive.
            await self.nc.publish(subject, payload, reply=reply or "")
            return await self._answer(None, within=PLAIN_WAIT)
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=1)
        try:
            await self.nc.publish(subject, payload, reply=inbox)
            return await self._answer(sub, within=2.0)
        finally:
            await sub.unsubscribe()

    async def subscribe(self, subject: str) -> Answer:
        """A plain subscription to `subject`: the server refuses it with a violation, or not."""
        await self.nc.flush()
        self.errors.clear()
        sub = await self.nc.subscribe(subject)
        try:
            return await self._answer(None, within=PLAIN_WAIT)
        finally:
            await sub.unsubscribe()

    async def _answer(self, sub: Subscription | None, *, within: float) -> Answer:
        """The violation or the reply, whichever comes first (the server may send its -ERR
        after the PONG of a flush, so a flush alone does not settle it)."""
        await self.nc.flush()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            violation = self._violation()
            if violation:
                return Answer(violation, "")
            if sub is None:
                await asyncio.sleep(0.01)
                continue
            try:
                msg = await sub.next_msg(timeout=0.02)
            except NatsTimeoutError:
                continue
            status = (msg.headers or {}).get("Status", "")
            return Answer(None, f"status {status}" if status else msg.data.decode()[:300])
        return Answer(self._violation(), "" if sub is None else "timeout")

    def _violation(self) -> str | None:
        return next((e for e in self.errors if "permissions violation" in e.lower()), None)


def body(stream: str, config: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"stream_name": stream, "config": config, **extra}).encode()


def durable_config(durable: str, **changes: Any) -> dict[str, Any]:
    config = DURABLES[durable][1].evolve(name=durable).as_dict()
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def throwaway_config(stream: str, name: str | None, **extra: Any) -> dict[str, Any]:
    config = {"ack_policy": "none", "mem_storage": True, "inactive_threshold": 10 * 10**9}
    if name:
        config["name"] = name
    config.update(extra or {"filter_subject": READ_FILTERS[stream]})
    return config


class Runner:
    """Tries each matrix row as one user; admin sets up, cleans up and restores around it."""

    def __init__(self, admin: Prober, js: JetStreamContext) -> None:
        self.admin, self.js = admin, js

    async def restore(self) -> None:
        """The contract's streams and consumers, as provisioned: nothing paused or redefined."""
        for durable, (stream, _) in DURABLES.items():
            await self.admin.attempt(f"{API}.CONSUMER.DELETE.{stream}.{durable}")
        await provision(self.js)

    async def run(self, who: Prober, case: Case) -> Answer:
        verb, target = case.verb, case.target
        if verb == "publish":
            return await who.attempt(target, b"{}")
        if verb == "subscribe":
            return await who.subscribe(target)
        if verb.startswith("consumer.") and "/" in target:
            stream, durable = target.split("/")
            answer = await self.durable_verb(who, verb.removeprefix("consumer."), stream, durable)
        elif verb.startswith("consumer."):
            answer = await self.reader_verb(who, verb.removeprefix("consumer."), target)
        else:
            answer = await self.stream_verb(who, verb, target)
        if verb in DESTRUCTIVE and answer.violation is None:
            await self.restore()
        return answer

    async def stream_verb(self, who: Prober, verb: str, stream: str) -> Answer:
        if verb == "account.info":
            return await who.attempt(f"{API}.INFO")
        if verb in ("stream.names", "stream.list"):
            return await who.attempt(f"{API}.STREAM.{verb.split('.')[1].upper()}", b"{}")
        if verb == "stream.create":
            config: dict[str, object] = {"name": stream, "subjects": ["copy.>"]}
            answer = await who.attempt(f"{API}.STREAM.CREATE.{stream}", json.dumps(config).encode())
            await self.admin.attempt(f"{API}.STREAM.DELETE.{stream}")
            return answer
        if verb == "stream.update":
            config = (await self.js.stream_info(stream)).config.as_dict()
            return await who.attempt(f"{API}.STREAM.UPDATE.{stream}", json.dumps(config).encode())
        subject, payload = {
            "stream.delete": (f"{API}.STREAM.DELETE.{stream}", b""),
            "stream.purge": (f"{API}.STREAM.PURGE.{stream}", b"{}"),
            "stream.msg-delete": (f"{API}.STREAM.MSG.DELETE.{stream}", b'{"seq": 1}'),
            "stream.info": (f"{API}.STREAM.INFO.{stream}", b""),
            "stream.msg-get": (f"{API}.STREAM.MSG.GET.{stream}", b'{"seq": 1}'),
            "stream.direct-get": (f"{API}.DIRECT.GET.{stream}", b'{"seq": 1}'),
        }[verb]
        return await who.attempt(subject, payload)

    async def durable_verb(self, who: Prober, verb: str, stream: str, durable: str) -> Answer:
        at = f"{stream}.{durable}"
        first = DURABLES[durable][1]
        only = first.filter_subject or (first.filter_subjects or [""])[0]
        requests: dict[str, tuple[str, bytes]] = {
            "create": (f"CONSUMER.CREATE.{at}", body(stream, durable_config(durable))),
            "create-filtered": (
                f"CONSUMER.CREATE.{at}.{only}",
                body(stream, durable_config(durable, filter_subject=only, filter_subjects=None)),
            ),
            "durable-create": (
                f"CONSUMER.DURABLE.CREATE.{at}",
                body(stream, durable_config(durable)),
            ),
            # The nameless create with the durable's name in the body redefines it (server.conf).
            "create-nameless": (
                f"CONSUMER.CREATE.{stream}",
                body(stream, durable_config(durable, durable_name=None, filter_subject="x.y")),
            ),
            "update": (
                f"CONSUMER.CREATE.{at}",
                body(stream, durable_config(durable, description="changed"), action="update"),
            ),
            "delete": (f"CONSUMER.DELETE.{at}", b""),
            "pause": (f"CONSUMER.PAUSE.{at}", b'{"pause_until": "2999-01-01T00:00:00Z"}'),
            "unpause": (f"CONSUMER.PAUSE.{at}", b'{"pause_until": "1970-01-01T00:00:00Z"}'),
            "reset": (f"CONSUMER.RESET.{at}", b""),
            "unpin": (f"CONSUMER.UNPIN.{at}", b'{"group": "g"}'),
            "stepdown": (f"CONSUMER.LEADER.STEPDOWN.{at}", b""),
            "info": (f"CONSUMER.INFO.{at}", b""),
            "next": (f"CONSUMER.MSG.NEXT.{at}", b'{"batch": 1, "no_wait": true}'),
        }
        if verb == "ack":
            return await who.attempt(f"$JS.ACK.{at}.1.1.1.0.0", b"+ACK", wait=False)
        if verb == "ack-by-reply":
            return await who.attempt(f"{API}.INFO", reply=f"$JS.ACK.{at}.1.1.1.0.0")
        subject, payload = requests[verb]
        return await who.attempt(f"{API}.{subject}", payload)

    async def reader_verb(self, who: Prober, verb: str, stream: str) -> Answer:
        name = f"t{secrets.token_hex(8)}"
        filt = READ_FILTERS[stream]
        if verb in ("names", "list"):
            return await who.attempt(f"{API}.CONSUMER.{verb.upper()}.{stream}", b"{}")
        if verb == "nameless-create":
            answer = await who.attempt(
                f"{API}.CONSUMER.CREATE.{stream}", body(stream, throwaway_config(stream, None))
            )
            found = re.search(r'"name":"([^"]+)"', answer.reply)
            name = found.group(1) if found else name
        elif verb in ("throwaway-next", "throwaway-delete"):
            created = await self.admin.attempt(
                f"{API}.CONSUMER.CREATE.{stream}.{name}.{filt}",
                body(stream, throwaway_config(stream, name)),
            )
            assert '"error"' not in created.reply, created.reply
            subject, payload = {
                "throwaway-next": (
                    f"CONSUMER.MSG.NEXT.{stream}.{name}",
                    b'{"batch": 1, "no_wait": true}',
                ),
                "throwaway-delete": (f"CONSUMER.DELETE.{stream}.{name}", b""),
            }[verb]
            answer = await who.attempt(f"{API}.{subject}", payload)
        else:
            subject, config = {
                "throwaway-create": (f"{stream}.{name}.{filt}", throwaway_config(stream, name)),
                "throwaway-create-nofilter": (
                    f"{stream}.{name}",
                    throwaway_config(stream, name, filter_subjects=[filt]),
                ),
                "fresh-durable": (
                    f"{stream}.{name}.{filt}",
                    {"durable_name": name, "filter_subject": filt, "ack_policy": "explicit"},
                ),
            }[verb]
            answer = await who.attempt(f"{API}.CONSUMER.CREATE.{subject}", body(stream, config))
        await self.admin.attempt(f"{API}.CONSUMER.DELETE.{stream}.{name}")
        return answer


def succeeded(case: Case, answer: Answer) -> bool:
    """Whether an allowed request did what it asked (a subject no stream takes has no ack)."""
    if case.verb not in SUCCEED or case.target.startswith("$JS.EVENT."):
        return True
    if answer.reply in ("timeout", "status 503") or '"error"' in answer.reply:
        return False
    return case.verb != "publish" or '"stream"' in answer.reply


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfiguredNatsServer]:
    running = ConfiguredNatsServer(store=tmp_path_factory.mktemp("matrix") / "nats")
    running.start()
    yield running
    running.stop()


async def connect(server: ConfiguredNatsServer, user: str) -> Prober:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        server.url_for(user),
        error_cb=on_error,
        allow_reconnect=False,
        name=f"matrix-{user}",
        inbox_prefix=inbox_prefix(user),  # as the services connect (connection_options)
    )
    return Prober(nc, errors)


@pytest.fixture
async def admin(server: ConfiguredNatsServer) -> AsyncIterator[Runner]:
    prober = await connect(server, "admin")
    runner = Runner(prober, prober.nc.jetstream(timeout=2.0))
    await runner.restore()
    yield runner
    await prober.nc.close()


@pytest.mark.parametrize("user", USERS)
async def test_every_verb_as_this_user_gets_the_matrix_answer(
    server: ConfiguredNatsServer, admin: Runner, user: str
) -> None:
    who = admin.admin if user == "admin" else await connect(server, user)
    wrong = []
    try:
        for case in CASES:
            answer = await admin.run(who, case)
            allowed = answer.violation is None
            if allowed != case.allowed[user]:
                got = "allowed: " + answer.reply if allowed else str(answer.violation)
                wrong.append(f"{case.name}: matrix says {case.allowed[user]}, got {got}")
            elif allowed and not succeeded(case, answer):
                wrong.append(f"{case.name}: allowed but failed: {answer.reply}")
    finally:
        if who is not admin.admin:
            await who.nc.close()
    assert not wrong, f"{user}:\n" + "\n".join(wrong)
