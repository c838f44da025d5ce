"""The audit ledger on a real nats-server: checkpoints, resume, export, and tamper detection."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from schemas.events import new_event_id
from schemas.report import EncounterReport
from services.audit.export import export
from services.audit.ledger import ForkRefused, Ledger, checkpoint_subject
from services.audit.merkle import leaf_input, root_of
from services.audit.note import (
    Checkpoint,
    Signer,
    join_notes,
    open_checkpoint,
    parse_note,
    sign_checkpoint,
    split_notes,
)
from services.audit.source import read_checkpoint_notes, verify_stream
from services.audit.verify import VerifyResult, verify_export
from services.eventlog import (
    CHECKPOINTS_STREAM,
    connect,
    provision,
    publish_event,
    read_messages,
)
from services.intake.reports import encounter_event
from tests.support import REPO, NatsServer, eventually, report, utcnow

ORIGIN = "dooralert.example/test-district"


async def publish_reports(js: JetStreamContext, n: int) -> None:
    for i in range(n):
        now = utcnow()
        rep = EncounterReport.model_validate(report(agent_count=1 + i % 5)).at(now)
        await publish_event(
            js, encounter_event(rep, incident_id=new_event_id(), actor="staff-test", now=now)
        )


async def log_root(js: JetStreamContext) -> bytes:
    """The v2 root over every message now in DOORALERT: subject ‖ LF ‖ payload leaves."""
    return root_of(leaf_input(m.subject, m.data) for m in await read_messages(js))


async def sizes(js: JetStreamContext) -> list[int]:
    return [Checkpoint.parse(parse_note(n).text).size for n in await read_checkpoint_notes(js)]


async def run_ledger(ledger: Ledger, *, until_size: int) -> None:
    """Run the ledger until it has read `until_size` events, then stop it (it signs on stop)."""
    stop = asyncio.Event()
    task = asyncio.create_task(ledger.run(stop))
    try:
        await eventually(lambda: task.done() or ledger.tree.size >= until_size)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


async def test_ledger_signs_every_n_events_and_on_stop_and_the_export_verifies(
    js: JetStreamContext, signer: Signer, tmp_path: Path
) -> None:
    await publish_reports(js, 12)
    ledger = Ledger(js, signer, origin=ORIGIN, every=5, seconds=60, out_dir=tmp_path / "outside")
    await run_ledger(ledger, until_size=12)
    assert await sizes(js) == [5, 10, 12]  # every 5, then what was left on a clean stop

    payloads = [m.data for m in await read_messages(js)]
    last = open_checkpoint((tmp_path / "outside" / "latest.txt").read_text(), signer.verifier)
    assert last == Checkpoint(ORIGIN, 12, await log_root(js))
    assert (tmp_path / "outside" / "checkpoint-000000000005.txt").is_file()

    out = tmp_path / "export"
    summary = await export(js, out)
    assert (summary.events, summary.checkpoints) == (12, 3)
    assert (out / "log-key.pub").read_text().strip() == signer.verifier.line
    first = json.loads((out / "events.jsonl").read_text().splitlines()[0])
    assert set(first) == {"seq", "subject", "time", "headers", "data"}
    assert first["seq"] == 1 and first["time"].endswith("Z") and "Nats-Msg-Id" in first["headers"]
    assert base64.b64decode(first["data"]) == payloads[0]
    assert len(split_notes((out / "checkpoints.txt").read_text())) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["leaf"] == "subject-lf-payload" and manifest["version"] == 2
    assert (manifest["events"], manifest["checkpoints"], manifest["last_seq"]) == (12, 3, 12)

    result = verify_export(out, signer.verifier, origin=ORIGIN)
    assert result.ok, result.render()
    assert (result.events, result.anchored, result.warnings) == (12, 12, [])


async def test_a_checkpoint_is_signed_after_t_seconds_even_below_n_events(
    js: JetStreamContext, signer: Signer
) -> None:
    ledger = Ledger(js, signer, origin=ORIGIN, every=1000, seconds=0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(ledger.run(stop))
    await publish_reports(js, 3)
    await eventually(lambda: ledger.last is not None and ledger.last.size == 3, timeout=5)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await sizes(js) == [3]  # nothing new on stop: no second, identical checkpoint


async def test_an_idle_ledger_waits_with_one_pull_yet_takes_the_next_event_at_once(
    js: JetStreamContext, signer: Signer
) -> None:
    """Caught up and anchored, the ledger holds one pull request open (IDLE_WAIT) instead of
    polling: it polled every 0.05 s once its last checkpoint was `seconds` old. An event
    stored meanwhile is answered at once, and a stop does not wait for the pull to end."""
    pulls: list[str] = []

    async def count(msg: Msg) -> None:
        pulls.append(msg.subject)

    sub = await js._nc.subscribe("$JS.API.CONSUMER.MSG.NEXT.>", cb=count)
    ledger = Ledger(js, signer, origin=ORIGIN, every=1000, seconds=0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(ledger.run(stop))
    try:
        await publish_reports(js, 3)
        await eventually(lambda: ledger.last is not None and ledger.last.size == 3, timeout=5)
        await asyncio.sleep(0.5)  # past `seconds` since that checkpoint: idle from here
        before = len(pulls)
        await asyncio.sleep(1.5)
        assert len(pulls) - before <= 1  # was 47 (a fetch every 0.05 s, some of two pulls)
        t0 = time.monotonic()
        await publish_reports(js, 1)
        await eventually(lambda: ledger.last is not None and ledger.last.size == 4, timeout=5)
        assert time.monotonic() - t0 < 2.0  # not IDLE_WAIT later
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await sub.unsubscribe()
    assert time.monotonic() - t0 < 1.0
    assert await sizes(js) == [3, 4]


async def test_restart_resumes_from_the_last_checkpoint_without_rereading_the_log(
    js: JetStreamContext, signer: Signer
) -> None:
    await publish_reports(js, 9)
    await run_ledger(Ledger(js, signer, origin=ORIGIN, every=4, seconds=60), until_size=9)
    await publish_reports(js, 4)

    again = Ledger(js, signer, origin=ORIGIN, every=4, seconds=60)
    await run_ledger(again, until_size=13)
    assert again.resumed_from == 9
    assert again.events_read == 4  # only the new events were read
    assert again.last == Checkpoint(ORIGIN, 13, await log_root(js))
    result = await verify_stream(js, signer.verifier)
    assert result.ok and result.anchored == 13, result.render()


@pytest.mark.parametrize(
    ("size", "message"),
    [(3, "does not hash to the last signed checkpoint"), (100, "ends at seq 3")],
    ids=["changed", "truncated"],
)
async def test_restart_refuses_to_sign_on_when_the_log_no_longer_matches_its_checkpoint(
    js: JetStreamContext, signer: Signer, size: int, message: str
) -> None:
    await publish_reports(js, 3)
    # A signed checkpoint the log does not match, without resume state: the ledger must
    # notice and stop rather than sign a fork.
    bogus = sign_checkpoint(signer, Checkpoint(ORIGIN, size, b"\x01" * 32))
    await js.publish(checkpoint_subject(ORIGIN), bogus.encode(), stream=CHECKPOINTS_STREAM)
    with pytest.raises(ForkRefused, match=message):
        await Ledger(js, signer, origin=ORIGIN).run(asyncio.Event())
    assert len(await read_checkpoint_notes(js)) == 1  # nothing signed


async def test_online_verify_reports_events_after_the_last_checkpoint_as_unanchored(
    js: JetStreamContext, signer: Signer
) -> None:
    await publish_reports(js, 4)
    await run_ledger(Ledger(js, signer, origin=ORIGIN, every=2, seconds=60), until_size=4)
    await publish_reports(js, 2)
    result = await verify_stream(js, signer.verifier)
    assert result.ok, result.render()
    assert result.warnings == ["2 events after the last checkpoint (seq 5..6) are unanchored"]


# --- tamper detection on one export, built once for the module ---------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Signer]:
    """An export of 12 events with checkpoints at sizes 5, 10 and 12, and its signer."""
    signer = Signer.generate(ORIGIN)
    server = NatsServer(store=tmp_path_factory.mktemp("nats"))
    out = tmp_path_factory.mktemp("export")

    async def build() -> None:
        nc = await connect(server.url, name="tests")
        js = nc.jetstream()
        await provision(js)
        await publish_reports(js, 12)
        await run_ledger(Ledger(js, signer, origin=ORIGIN, every=5, seconds=60), until_size=12)
        await export(js, out)
        await nc.close()

    server.start()
    try:
        asyncio.run(build())
    finally:
        server.stop()
    return out, signer


@pytest.fixture
def copy(built: tuple[Path, Signer], tmp_path: Path) -> Path:
    return Path(shutil.copytree(built[0], tmp_path / "export"))


def lines(d: Path) -> list[str]:
    return (d / "events.jsonl").read_text().splitlines()


def write_lines(d: Path, rows: list[str]) -> None:
    (d / "events.jsonl").write_text("\n".join(rows) + "\n")


def failed(result: VerifyResult, *needles: str) -> str:
    text = result.render()
    assert not result.ok, text
    first = text.splitlines()[-1]
    assert first.startswith("FAILED: "), text
    for needle in needles:
        assert needle in first, text
    return text


def test_the_untouched_export_verifies(built: tuple[Path, Signer]) -> None:
    out, signer = built
    result = verify_export(out, signer.verifier)
    assert result.ok and result.anchored == 12, result.render()


def test_one_changed_payload_byte_is_detected_between_two_checkpoints(
    copy: Path, built: tuple
) -> None:
    rows = lines(copy)
    obj = json.loads(rows[6])  # seq 7
    data = bytearray(base64.b64decode(obj["data"]))
    data[10] ^= 0x01
    obj["data"] = base64.b64encode(bytes(data)).decode()
    rows[6] = json.dumps(obj)
    write_lines(copy, rows)
    failed(verify_export(copy, built[1].verifier), "checkpoint #2 (size 10)", "6..10")


def test_a_deleted_event_is_a_sequence_gap(copy: Path, built: tuple) -> None:
    rows = lines(copy)
    del rows[6]
    write_lines(copy, rows)
    failed(verify_export(copy, built[1].verifier), "expected seq 7, found seq 8")


def test_two_swapped_events_are_detected(copy: Path, built: tuple) -> None:
    rows = lines(copy)
    rows[2], rows[3] = rows[3], rows[2]
    write_lines(copy, rows)
    failed(verify_export(copy, built[1].verifier), "expected seq 3, found seq 4")


def test_two_swapped_payloads_with_renumbered_sequences_are_detected(
    copy: Path, built: tuple
) -> None:
    rows = [json.loads(r) for r in lines(copy)]
    rows[2]["data"], rows[3]["data"] = rows[3]["data"], rows[2]["data"]
    write_lines(copy, [json.dumps(r) for r in rows])
    # each payload now sits under the other's subject: named exactly, before the root check
    text = failed(verify_export(copy, built[1].verifier), "seq 3: subject", "moved")
    assert "checkpoint #1 (size 5): root does not match" in text


def test_a_truncated_tail_is_detected_against_the_last_checkpoint(copy: Path, built: tuple) -> None:
    write_lines(copy, lines(copy)[:9])
    failed(verify_export(copy, built[1].verifier), "seq 10..", "truncated")


def test_a_replaced_checkpoint_root_fails_its_signature(copy: Path, built: tuple) -> None:
    notes = split_notes((copy / "checkpoints.txt").read_text())
    body, sig = notes[1].split("\n\n")
    origin, size, _root = body.split("\n")[:3]
    notes[1] = f"{origin}\n{size}\n{base64.b64encode(b'x' * 32).decode()}\n\n{sig}"
    (copy / "checkpoints.txt").write_text(join_notes(notes))
    failed(verify_export(copy, built[1].verifier), "checkpoint #2 (size 10)", "not valid")


def test_a_checkpoint_signed_by_another_key_is_refused(copy: Path, built: tuple) -> None:
    impostor = Signer.generate(ORIGIN)  # same name, different key
    notes = split_notes((copy / "checkpoints.txt").read_text())
    notes[2] = sign_checkpoint(impostor, Checkpoint(ORIGIN, 12, b"\x02" * 32))
    (copy / "checkpoints.txt").write_text(join_notes(notes))
    failed(verify_export(copy, built[1].verifier), "checkpoint #3 (size 12)", "not signed by")


def test_two_valid_checkpoints_of_one_size_with_different_roots_are_a_fork(
    copy: Path, built: tuple
) -> None:
    notes = split_notes((copy / "checkpoints.txt").read_text())
    notes.append(sign_checkpoint(built[1], Checkpoint(ORIGIN, 10, b"\x03" * 32)))
    (copy / "checkpoints.txt").write_text(join_notes(notes))
    failed(verify_export(copy, built[1].verifier), "fork at size 10", "#2 and checkpoint #4")


def test_an_export_without_checkpoints_is_not_trusted(copy: Path, built: tuple) -> None:
    (copy / "checkpoints.txt").unlink()
    failed(verify_export(copy, built[1].verifier), "no checkpoint signed", "12 events")


def test_a_corrupt_export_line_is_named(copy: Path, built: tuple) -> None:
    rows = lines(copy)
    rows[4] = rows[4][:-5]
    write_lines(copy, rows)
    failed(verify_export(copy, built[1].verifier), "events.jsonl line 5")


# --- the command line, once, as an operator runs it ----------------------------------------


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_operator_generates_a_key_serves_exports_and_verifies_from_the_cli(
    js: JetStreamContext, nats_server: NatsServer, tmp_path: Path
) -> None:
    key = tmp_path / "log.key"
    env = {
        **os.environ,
        "DOORALERT_NATS_URL": nats_server.url,
        "DOORALERT_LOG_FORMAT": "json",
        "DOORALERT_LOG_KEY_FILE": str(key),
        "DOORALERT_LOG_ORIGIN": ORIGIN,
        "DOORALERT_CHECKPOINT_EVERY": "3",
        "DOORALERT_CHECKPOINT_SECONDS": "60",
    }
    gen = cli("keys", "generate", "--name", ORIGIN, "--out", str(key), env=env)
    assert gen.returncode == 0, gen.stderr
    verifier_line = gen.stdout.strip()
    assert oct(key.stat().st_mode & 0o777) == "0o600"

    await publish_reports(js, 7)
    serve = subprocess.Popen(  # noqa: ASYNC220 - only starts it; waited for in a thread below
        [sys.executable, "-m", "services.cli.main", "audit", "serve"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await eventually(lambda: has_checkpoint(js, 6), timeout=20)
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(serve.communicate, timeout=20)
    assert serve.returncode == 0, err.decode()
    assert await sizes(js) == [3, 6, 7]

    out = tmp_path / "export"
    exp = cli("audit", "export", "--out", str(out), env=env)
    assert exp.returncode == 0, exp.stderr
    assert "7 events, 3 checkpoints" in exp.stdout
    offline = cli("audit", "verify", "--export", str(out), "--key", verifier_line, env=env)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert offline.stdout.strip().endswith("OK")

    await publish_reports(js, 1)
    online = cli("audit", "verify", "--key", str(out / "log-key.pub"), env=env)
    assert online.returncode == 0, online.stdout + online.stderr
    assert "1 events after the last checkpoint (seq 8..8) are unanchored" in online.stdout

    other = Signer.generate(ORIGIN).verifier.line
    wrong = cli("audit", "verify", "--export", str(out), "--key", other, env=env)
    assert wrong.returncode == 1
    assert "FAILED: checkpoint #1 (size 3)" in wrong.stdout


async def has_checkpoint(js: JetStreamContext, size: int) -> bool:
    return size in await sizes(js)


# --- an independent verifier, written from the README's description of the export only -----


def independent_verify(d: Path, key_line: str) -> bool:
    """hashlib, base64, json and an Ed25519 check; nothing imported from dooralert."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    meta = json.loads((d / "manifest.json").read_text())
    if (meta["leaf"], meta["version"]) != ("subject-lf-payload", 2):
        return False
    name, _, blob = key_line.strip().split("+", 2)
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(blob)[1:])
    want: dict[int, bytes] = {}
    text = (d / "checkpoints.txt").read_text()
    for chunk in [c for c in text.split("\n\n") if c]:
        if chunk.startswith("\u2014 "):
            continue
        body = chunk + "\n"
        sig_start = text.index(chunk) + len(chunk) + 2
        sig_line = text[sig_start:].split("\n", 1)[0]
        signer, sig = sig_line[2:].split(" ")
        raw = base64.b64decode(sig)
        if signer != name:
            return False
        public.verify(raw[4:], body.encode())  # raises if the signature is bad
        _origin, size, root = body.splitlines()[:3]
        want[int(size)] = base64.b64decode(root)
    leaves = []
    for n, line in enumerate((d / "events.jsonl").read_text().splitlines(), 1):
        row = json.loads(line)
        payload = base64.b64decode(row["data"])
        event = json.loads(payload)
        _, school, incident, kind = row["subject"].split(".", 3)
        if row["seq"] != n or (event["type"], event["school_id"], event["incident_id"]) != (
            kind,
            school,
            incident,
        ):
            return False
        leaves.append(hashlib.sha256(b"\x00" + row["subject"].encode() + b"\n" + payload).digest())

    def mth(hs: list[bytes]) -> bytes:
        if len(hs) == 1:
            return hs[0]
        k = 1 << ((len(hs) - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + mth(hs[:k]) + mth(hs[k:])).digest()

    return bool(want) and all(s <= len(leaves) and mth(leaves[:s]) == r for s, r in want.items())


def test_an_independent_verifier_agrees_on_a_good_and_a_moved_subject_export(
    copy: Path, built: tuple
) -> None:
    out, signer = built
    assert independent_verify(out, signer.verifier.line) is True
    assert verify_export(out, signer.verifier).ok
    rows = [json.loads(r) for r in lines(copy)]
    rows[6]["subject"] = rows[2]["subject"]  # seq 7 moved onto seq 3's incident
    write_lines(copy, [json.dumps(r) for r in rows])
    assert independent_verify(copy, signer.verifier.line) is False
    failed(verify_export(copy, signer.verifier), "seq 7: subject")


def test_a_v1_export_without_a_manifest_is_refused_by_name(copy: Path, built: tuple) -> None:
    from services.audit.verify import ExportFormatError

    (copy / "manifest.json").unlink()
    with pytest.raises(ExportFormatError, match="v1 export"):
        verify_export(copy, built[1].verifier)


async def test_with_its_checkpoints_stream_lost_the_ledger_resumes_from_the_copy_outside(
    js: JetStreamContext, signer: Signer, tmp_path: Path
) -> None:
    await publish_reports(js, 5)
    first = Ledger(js, signer, origin=ORIGIN, every=2, seconds=60, out_dir=tmp_path)
    await run_ledger(first, until_size=5)
    # The stream deleted and provisioned anew: empty, while the log still holds 5 events.
    info = await js.stream_info(CHECKPOINTS_STREAM)
    await js.delete_stream(CHECKPOINTS_STREAM)
    await js.add_stream(info.config)
    await publish_reports(js, 2)
    again = Ledger(js, signer, origin=ORIGIN, every=2, seconds=60, out_dir=tmp_path)
    await run_ledger(again, until_size=7)
    assert again.resumed_from == 5  # the outside copy, checked against the rebuilt tree
    assert again.last == Checkpoint(ORIGIN, 7, await log_root(js))

    # The log changed under that copy: the ledger refuses to sign a fork.
    (tmp_path / "latest.txt").write_text(
        sign_checkpoint(signer, Checkpoint(ORIGIN, 7, b"\x02" * 32)), encoding="utf-8"
    )
    await js.delete_stream(CHECKPOINTS_STREAM)
    await js.add_stream(info.config)
    with pytest.raises(ForkRefused, match="does not hash to the last signed checkpoint"):
        await Ledger(js, signer, origin=ORIGIN, out_dir=tmp_path).run(asyncio.Event())
