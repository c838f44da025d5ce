"""Single look-ups by JetStream direct get ($JS.API.DIRECT.GET: the message comes back as
itself, headers and raw payload, instead of the JSON API's base64 inside JSON), for streams
whose config has `allow_direct` (contract.py says which).

Measured on this VM: nats-server CPU 210 -> 130 us and client CPU 343 -> 206 us per get.

Consistency: in a cluster any current replica may answer a direct get, and a follower that
lags may not have a message yet. Only messages that never change once written are read this
way (a report, a pattern event, a notes key), and each is written before anything that leads
a reader to it; so a message a replica returns is the right one, and a "not found" is asked
again of the stream leader (the JSON API) before it is believed - unless the server is a
single JetStream server in no cluster (dev, the benchmark): there the one copy answered.
"""

from __future__ import annotations

import time
from typing import Any

from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

from services.eventlog.request import direct_last
from services.runtime.logging import get_logger

log = get_logger("dooralert.eventlog")

# After a direct get found no responder (the stream does not allow direct gets: not yet
# upgraded by `dooralert provision`), reads go to the leader for this long before trying again.
DIRECT_RETRY_AFTER_S = 60.0


class DirectLast:
    """Last-message-on-a-subject reads of one stream: a direct get, then the leader's answer
    if that found nothing. One instance per stream and connection (it remembers whether the
    stream answers direct gets)."""

    def __init__(self, js: JetStreamContext, stream: str) -> None:
        self.js = js
        self.stream = stream
        self._leader_only_until = 0.0
        # Counters, for tests and measurements: answered directly, asked of the leader after
        # a direct "not found", asked of the leader because direct gets are unavailable.
        self.direct = 0
        self.fallback_not_found = 0
        self.fallback_unavailable = 0

    async def get(self, subject: str) -> bytes | None:
        """The payload of the last message on the exact `subject`, or None if the stream
        leader has none. Raises what the requests raise (transient errors: retry it)."""
        if time.monotonic() >= self._leader_only_until:
            try:
                data, _ = await direct_last(self.js, self.stream, subject)
            except NotFoundError:
                if _single_server(self.js):
                    return None
                # None here, or a replica that lags: only the leader can say it is absent.
                self.fallback_not_found += 1
            except NoRespondersError:
                self._leader_only_until = time.monotonic() + DIRECT_RETRY_AFTER_S
                self.fallback_unavailable += 1
                log.info("direct_get.unavailable", stream=self.stream)
            else:
                self.direct += 1
                return data
        try:
            msg = await self.js.get_last_msg(self.stream, subject)
        except NotFoundError:
            return None
        return msg.data


async def read_key_direct(kv: KeyValue, key: str) -> bytes | None:
    """The value of `key` in a bucket whose direct gets its leader answers (one replica:
    contract.bucket_allows_direct), by one direct get - without nats-py's KeyValue.Entry and
    per-request overhead (request.py): None when absent, deleted or purged. Raises
    NoRespondersError when the bucket no longer answers direct gets, and what the request
    raises otherwise."""
    bucket: Any = kv
    try:
        value, headers = await direct_last(bucket._js, bucket._stream, f"{bucket._pre}{key}")
    except NotFoundError:
        return None
    return None if headers.get(KV_OP) in (KV_DEL, KV_PURGE) else value


def _single_server(js: JetStreamContext) -> bool:
    """Whether the server this connection is on runs JetStream itself and is in no cluster:
    then every stream has its one copy there, and a direct get's "not found" is the leader's.
    (Read per call: a reconnect may land on another server.)"""
    info = getattr(getattr(js, "_nc", None), "_server_info", None) or {}
    return bool(info.get("jetstream")) and not info.get("cluster")


class LeaderCheckedKeyValue(KeyValue):
    """A KV bucket whose reads use direct gets when its stream allows them (as nats-py's does),
    but a key found absent or deleted is read again from the stream leader before that answer
    is returned: a lagging replica never makes a key that exists look absent.

    For buckets whose keys are written before anything leads a reader to them (the notes
    keys). Not for the notifier's delivery records, which change (a stale record decides
    whether an email goes twice): that bucket allows direct gets only with one replica, where
    the replica answering is the leader (contract.bucket_allows_direct).
    """

    def __init__(
        self, *, name: str, stream: str, pre: str, js: JetStreamContext, direct: bool
    ) -> None:
        super().__init__(name=name, stream=stream, pre=pre, js=js, direct=direct)
        self._leader = KeyValue(name=name, stream=stream, pre=pre, js=js, direct=False)

    async def _get(self, key: str, revision: int | None = None) -> KeyValue.Entry:
        # nats-py's get() and create() both read through _get.
        if not self._direct:
            return await self._leader._get(key, revision)
        try:
            return await super()._get(key, revision)
        except (KeyNotFoundError, KeyDeletedError):
            if _single_server(self._js):
                raise
            # Absent or deleted here, or a replica that lags: ask the leader.
            return await self._leader._get(key, revision)
        except NoRespondersError:
            # Direct gets were turned off since this bucket was bound: the leader from now on.
            self._direct = False
            log.info("direct_get.unavailable", stream=self._stream)
            return await self._leader._get(key, revision)


async def leader_checked_key_value(js: JetStreamContext, bucket: str) -> LeaderCheckedKeyValue:
    """Bind to `bucket` like `js.key_value` (raises BucketNotFoundError if it is missing)."""
    kv = await js.key_value(bucket)
    return LeaderCheckedKeyValue(
        name=kv._name, stream=kv._stream, pre=kv._pre, js=js, direct=kv._direct
    )


class ConsistentKeyValue(KeyValue):
    """A KV bucket whose reads must be the leader's (the notifier's delivery records: a stale
    record decides whether an email goes twice; the notes keys): direct gets only while the
    bucket has one replica (the replica answering is then the leader), and the leader from the
    moment direct gets stop answering (`dooralert provision` turns them off when replicas are
    raised) instead of failing every read until a restart.

    A "no responders" can also be passing (a nats-server restarting loads its streams before
    it answers direct gets): after DIRECT_RETRY_AFTER_S the next read asks the stream's config
    again (one STREAM.INFO) and goes back to direct gets if it still allows them with one
    replica; otherwise the leader for another while."""

    def __init__(
        self, *, name: str, stream: str, pre: str, js: JetStreamContext, direct: bool
    ) -> None:
        super().__init__(name=name, stream=stream, pre=pre, js=js, direct=direct)
        self._direct_when_bound = direct
        self._leader_only_until = 0.0

    async def _get(self, key: str, revision: int | None = None) -> KeyValue.Entry:
        if (
            not self._direct
            and self._direct_when_bound
            and time.monotonic() >= self._leader_only_until
        ):
            await self._check_direct()
        if not self._direct:
            return await super()._get(key, revision)
        try:
            return await super()._get(key, revision)
        except NoRespondersError:
            self._direct = False
            self._leader_only_until = time.monotonic() + DIRECT_RETRY_AFTER_S
            log.info("direct_get.unavailable", stream=self._stream)
            return await super()._get(key, revision)

    async def _check_direct(self) -> None:
        """Direct gets again if the bucket still allows them with one replica (one caller
        asks; the others read from the leader meanwhile)."""
        self._leader_only_until = time.monotonic() + DIRECT_RETRY_AFTER_S
        try:
            config = (await self._js.stream_info(self._stream)).config
        except Exception:  # noqa: BLE001 - the leader it is, for another while
            return
        if config.allow_direct and (config.num_replicas or 1) == 1:
            self._direct = True
            log.info("direct_get.available", stream=self._stream)


async def consistent_key_value(js: JetStreamContext, bucket: str) -> KeyValue:
    """Bind to `bucket` like `js.key_value`, reading direct only with a single replica."""
    kv = await js.key_value(bucket)
    if not getattr(kv, "_direct", False):
        return kv  # leader reads already (or a KeyValue without direct gets)
    info = await js.stream_info(kv._stream)
    direct = (info.config.num_replicas or 1) == 1
    return ConsistentKeyValue(name=kv._name, stream=kv._stream, pre=kv._pre, js=js, direct=direct)
