"""The notifier's message parser (services/eventlog/consumer.py): what FastStream's JetStream
parser gives a handler, without the per-message subject match and random correlation id."""

from __future__ import annotations

from nats.aio.msg import Msg

from services.eventlog.consumer import message_parser

ACK = "$JS.ACK.DOORALERT.notifier.1.42.7.1700000000000000000.0"


def msg(headers: dict[str, str] | None = None) -> Msg:
    return Msg(
        _client=None,  # type: ignore[arg-type]  # never used: nothing is acked here
        subject="dooralert.hamline.inc-1.notification.requested",
        reply=ACK,
        data=b'{"type": "notification.requested"}',
        headers=headers,
    )


async def test_a_message_keeps_its_body_and_raw_message_and_is_named_by_its_delivery() -> None:
    raw = msg()
    parsed = await message_parser(raw)
    assert parsed.raw_message is raw and parsed.body == raw.data
    assert parsed.correlation_id == parsed.message_id == ACK
    assert parsed.headers == {} and parsed.reply_to == "" and parsed.path == {}
    assert parsed.committed is None  # not acked by parsing


async def test_headers_a_publisher_set_are_kept() -> None:
    parsed = await message_parser(
        msg({"correlation_id": "c-1", "message_id": "m-1", "content-type": "application/json"})
    )
    assert (parsed.correlation_id, parsed.message_id) == ("c-1", "m-1")
    assert parsed.content_type == "application/json"
