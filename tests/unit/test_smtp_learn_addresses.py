"""Envelopes worked out ahead (smtp.learn_addresses): after the notifier has learnt the
directory's addresses, an email to any of them parses nothing, and gets the same envelope as
before; a refused address is skipped (its email is refused as it always was); learning a large
directory leaves the event loop to an alert arriving meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.domain.directory import EmailChannel, load_directory
from services.notifier import smtp
from services.notifier.plan import email_addresses

SENDER = "dooralert <alerts@district.example>"
EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


@pytest.fixture(autouse=True)
def empty_caches() -> None:
    smtp._envelope_cached.cache_clear()
    smtp._quoted.cache_clear()


async def test_learnt_addresses_are_not_parsed_again() -> None:
    to = [f"principal{i}@school{i}.example.org" for i in range(40)]
    assert await smtp.learn_addresses(SENDER, to) == 40
    parsed = smtp._envelope_cached.cache_info().misses
    quoted = smtp._quoted.cache_info().misses
    for address in to:
        sender, recipients = smtp._addresses(SENDER, address)
        assert (sender, recipients) == ("alerts@district.example", (address,))
        assert smtp._quoted(address) == f"<{address}>"
    assert smtp._envelope_cached.cache_info().misses == parsed
    assert smtp._quoted.cache_info().misses == quoted


async def test_same_envelope_as_parsing_on_first_use() -> None:
    to = ["Law Office <law@district.example>", "safety@district.example"]
    first_use = [smtp._addresses(SENDER, a) for a in to]
    smtp._envelope_cached.cache_clear()
    await smtp.learn_addresses(SENDER, to)
    assert [smtp._addresses(SENDER, a) for a in to] == first_use


async def test_a_refused_address_is_skipped_and_still_refused() -> None:
    no_address, unquotable = "", "no-address-at-all <>"
    learnt = await smtp.learn_addresses(SENDER, [no_address, unquotable, "ok@district.example"])
    assert learnt == 1
    with pytest.raises(ValueError, match="No recipient"):
        smtp._addresses(SENDER, no_address)
    (rcpt,) = smtp._addresses(SENDER, unquotable)[1]
    with pytest.raises(ValueError, match="not permitted"):
        smtp._quoted(rcpt)


async def test_learning_many_addresses_leaves_the_loop_to_others() -> None:
    turns = 0

    async def alert_arriving() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(alert_arriving())
    await asyncio.sleep(0)
    before = turns
    to = [f"c{i}@district.example" for i in range(10 * smtp._LEARN_BATCH)]
    assert await smtp.learn_addresses(SENDER, to) == len(to)
    other.cancel()
    assert turns - before >= 9  # a turn after every batch, not one at the end


def test_the_directory_addresses_are_every_email_channel() -> None:
    directory = load_directory(EXAMPLES)
    expected = {
        channel.address
        for contact in directory.contacts
        for channel in contact.channels
        if channel.type == "email"
    }
    assert expected and set(email_addresses(directory)) == expected


# Addresses district.yaml accepts (directory.EmailChannel's pattern) on which the email
# package's parser fails with something other than ValueError.
ODD = ["principal@[10.0.0.1", ":@'\\;x"]


async def test_an_address_the_parser_chokes_on_is_skipped_and_the_rest_still_learnt() -> None:
    for odd in ODD:
        EmailChannel(type="email", address=odd)  # district.yaml takes it
    to = ["first@district.example", *ODD, "last@district.example"]
    assert await smtp.learn_addresses(SENDER, to) == 2
    parsed = smtp._envelope_cached.cache_info().misses
    smtp._addresses(SENDER, "last@district.example")
    assert smtp._envelope_cached.cache_info().misses == parsed  # learnt after the odd ones


async def test_a_directory_larger_than_the_caches_learns_only_what_they_keep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Learning past the caches' size would evict the first addresses learnt: it stops."""
    monkeypatch.setattr(smtp, "_ADDRESSES_KEPT", 8)
    to = [f"contact{i}@district.example" for i in range(20)]
    assert await smtp.learn_addresses(SENDER, to) == 8
    assert smtp._envelope_cached.cache_info().currsize == 8
