"""`first_line`: the one line of a library's exception that a sao error quotes."""

from __future__ import annotations

from sao.errors import first_line


def test_first_line_of_a_long_message_a_bare_exception_and_a_capped_one():
    assert first_line(RuntimeError("\n  connection refused\nTraceback (most recent call last): ...")) == (
        "connection refused"
    )
    assert first_line(KeyError()) == "KeyError"  # no message: its type says what happened
    assert first_line(ValueError("x" * 50), limit=10) == "xxxxxxx..."
