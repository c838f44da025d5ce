"""The cheaper header parsing gives nats-py's own answers (services/eventlog/natsheaders.py)."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable

import nats.aio.client as client_module
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from services.eventlog import natsheaders

Parse = Callable[[bytes], dict[str, str]]


def nats_own() -> Parse:
    """nats-py's own `_parse_header_lines`, compiled from its source (install() replaced the
    attribute on the class)."""
    tree = ast.parse(inspect.getsource(client_module))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "_parse_header_lines":
            node.decorator_list = []
            namespace: dict[str, object] = dict(vars(client_module))
            module = ast.Module(body=[node], type_ignores=[])
            exec(compile(module, "<nats-py _parse_header_lines>", "exec"), namespace)
            found = namespace["_parse_header_lines"]
            assert callable(found)
            return found  # type: ignore[return-value]
    raise AssertionError("this nats-py has no _parse_header_lines")


OWN = nats_own()

lines = st.lists(
    st.one_of(
        st.binary(max_size=30),
        st.builds(
            lambda k, v: k + b":" + v,
            st.sampled_from(
                [b"Nats-Stream", b" Status ", b"A B", b"X\x1cY", b"\x1cZ", b"\xc3\xa9", b"", b"K"]
            ),
            st.binary(max_size=20),
        ),
    ),
    max_size=8,
)


def test_installed_on_this_nats_py() -> None:
    assert Client._parse_header_lines is natsheaders.parse_header_lines


@settings(max_examples=400, deadline=None)
@given(lines)
def test_the_same_answers_as_nats_py(parts: list[bytes]) -> None:
    raw = b"NATS/1.0\r\n" + b"\r\n".join(parts) + b"\r\n\r\n"
    assert natsheaders.parse_header_lines(raw) == OWN(raw)


def test_a_nats_py_that_answers_differently_keeps_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    def different(raw: bytes) -> dict[str, str]:
        return {}

    monkeypatch.setattr(Client, "_parse_header_lines", staticmethod(different))
    assert natsheaders.install() is False
    assert Client._parse_header_lines is different
