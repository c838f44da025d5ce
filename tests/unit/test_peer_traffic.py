"""The peer benchmark's NATS traffic table (benchmarks/peer_traffic.py): per-report arithmetic
over two snapshots and the kinds of messages."""

from __future__ import annotations

from typing import Any

from nats.aio.msg import Msg

from benchmarks import peer_traffic as pt


def _conn(name: str, sent: int, got: int, subs: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in_msgs": sent,
        "out_msgs": got,
        "in_bytes": 0,
        "out_bytes": 0,
        "subs": subs or {},
    }


def _snap(conns: dict[int, dict[str, Any]], io: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    server = {"in_msgs": 0, "out_msgs": 0, "in_bytes": 0, "out_bytes": 0}
    return {"conns": conns, "server": server, "io": io}


def test_per_report_sums_a_services_connections_and_processes() -> None:
    before = _snap(
        {
            1: _conn("dooralert-notifier", 10, 20),
            2: _conn("dooralert-notifier", 0, 0),
            3: _conn("dooralert-router", 5, 5),
        },
        {"notifier-1": (0, 0, 0.0, 0.0, 0), "notifier-2": (0, 0, 0.0, 0.0, 0)},
    )
    after = _snap(
        {
            1: _conn("dooralert-notifier", 30, 40, {"_INBOX.>": 8}),
            2: _conn("dooralert-notifier", 20, 20, {"_INBOX.>": 12}),
            3: _conn("dooralert-router", 25, 25),
            4: _conn("dooralert-status", 99, 99),  # made in between: left out
            5: _conn("bench-subjects", 0, 500),  # the benchmark's own: left out
        },
        {"notifier-1": (4, 8, 0.5, 0.1, 2), "notifier-2": (4, 8, 0.5, 0.1, 2)},
    )
    got = pt.per_report(before, after, 4)
    notifier = got["services"]["notifier"]
    assert notifier["connections"] == 2
    assert notifier["sent"] == (20 + 20) / 4
    assert notifier["received"] == (20 + 20) / 4
    assert notifier["subs"] == {"_INBOX.>": 5.0}
    assert notifier["syscw"] == 4.0
    assert notifier["user_ms"] == 250.0
    assert got["services"]["router"]["sent"] == 5.0
    assert "status" not in got["services"] and "bench" not in got["services"]


def _msg(subject: str, reply: str = "", data: bytes = b"", headers: Any = None) -> Msg:
    return Msg(_client=None, subject=subject, reply=reply, data=data, headers=headers)  # type: ignore[arg-type]


def test_kinds_tell_deliveries_from_publishes_and_replies() -> None:
    ack = "$JS.ACK.DOORALERT.notifier.1.2.3.4.5.0"
    assert pt.kind(_msg("dooralert.s.i.notification.requested", reply="_INBOX.a.b")) == (
        "publish event notification.requested"
    )
    assert pt.kind(_msg("dooralert.s.i.notification.requested", reply=ack)) == (
        "delivery DOORALERT/notifier notification.requested"
    )
    assert pt.kind(_msg(ack, data=b"+ACK")) == "ack DOORALERT/notifier +ACK"
    assert pt.kind(_msg("$JS.API.CONSUMER.MSG.NEXT.DOORALERT.router")) == (
        "request CONSUMER.MSG.NEXT.DOORALERT.router"
    )
    throwaway = "$JS.API.CONSUMER.CREATE.DOORALERT.Ab12Cd34Ef56Gh78Ij90.dooralert.>"
    assert pt.kind(_msg(throwaway)) == "request CONSUMER.CREATE.DOORALERT.*"
    assert pt.kind(_msg("$JS.API.STREAM.MSG.GET.KV_X")) == "request STREAM.MSG.GET.KV_X"
    assert pt.kind(_msg("$JS.API.DIRECT.GET.DOORALERT.dooralert.a.b.c")) == (
        "request DIRECT.GET.DOORALERT"
    )
    pub_ack = b'{"stream":"DOORALERT","seq":5}'
    assert pt.kind(_msg("_INBOX.a.b", data=pub_ack)) == "to inbox: PubAck"
    assert pt.kind(_msg("_INBOX.a", headers={"Status": "404"})) == "to inbox: status 404"
