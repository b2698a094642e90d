"""The verifiable reward R_VR: 1 when a completion's final ``Answer: ...`` matches the reference, else 0.

The model is asked to end with a line ``Answer: <final answer>`` (`ANSWER_INSTRUCTION`); `extract_answer` reads the
last such line, or the last "the answer is X" sentence or GSM8K-style ``#### X`` line (small chat models such as
SmolLM2-135M write "The answer is 30." whatever they are asked: strict parsing scored all of them 0), and
`is_correct` compares it with the reference, as mathematics (HF's math-verify, so ``1,000``, ``1000`` and
``1000.0`` agree) or as text. A completion with no answer line scores 0 and is counted apart, so a
report can tell a model that answers wrongly from one that never answers in the asked form.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Checker = Literal["math", "exact"]

ANSWER_INSTRUCTION = (
    "Work it out step by step if that helps, then give your final answer on the last line, "
    "in the form 'Answer: <final answer>'."
)

# "Answer:" anywhere in a line, as a word, with markdown bold around the word or the colon ("**Answer:** 42",
# "**Answer**: 42"); the answer is the rest of that line.
_ANSWER = re.compile(r"\banswer\b\**\s*:(?P<answer>[^\n]*)", re.IGNORECASE)
# The two other conventions: "the (final) answer is X" (to the end of its sentence; "is:" too) and "#### X".
_ANSWER_IS = re.compile(r"\banswer\s+is\b\s*:?(?P<answer>[^\n]*?)(?=\.\s|\.?$)", re.IGNORECASE | re.MULTILINE)
_HASHES = re.compile(r"^\s*####(?P<answer>[^\n]*)", re.MULTILINE)
# An exponent tower or a power with a 6-digit exponent: sympy would compute the number, for minutes or forever
# (10^10^10 has ten billion digits). Outside the main thread math-verify has no timeout, so these are not tried.
_HUGE_POWER = re.compile(r"(\^|\*\*)\s*[{(]?\s*[\d.]+\s*[})]?\s*(\^|\*\*)|(\^|\*\*)\s*[{(]?\s*\d{6,}")
# Seconds math-verify may spend on one parse or comparison, where its SIGALRM timeout can run (the main thread).
_MATH_TIMEOUT = 5


@dataclass(frozen=True)
class VerifiableResult:
    """R_VR of each completion (1.0 or 0.0), the answer read from it (None: no answer line), and the counts."""

    rewards: list[float]
    answers: list[str | None]
    correct: int
    wrong: int
    no_answer: int


def extract_answer(text: str) -> str | None:
    """The final answer of ``text``: the rest of the line after its last ``Answer:`` (any case, markdown bold
    allowed), or, where there is none, the last "the answer is X" sentence or ``#### X`` line, whichever comes
    last; without surrounding ``*`` or whitespace or a trailing full stop. None when there is no answer or it is
    empty."""
    matches = list(_ANSWER.finditer(text)) or [*_ANSWER_IS.finditer(text), *_HASHES.finditer(text)]
    if not matches:
        return None
    last = max(matches, key=lambda m: m.start())
    answer = last["answer"].strip().strip("*").strip().rstrip(".").strip()
    return answer or None


def normalise_text(text: str) -> str:
    """``text`` stripped, case-folded, with every run of whitespace one space: the "exact" checker's form."""
    return " ".join(text.casefold().split())


def is_correct(predicted: str, reference: str, checker: Checker) -> bool:
    """Whether the answer ``predicted`` matches ``reference``.

    "exact": equal after `normalise_text`. "math": equal after `normalise_text`, or equal as mathematics by
    math-verify (numbers, fractions, LaTeX, sets; "1,000" = "1000", "$18" = "18", "1/2" = "0.5"). The reference is
    read as LaTeX; the answer both as LaTeX and as plain text, and either reading may match.

    math-verify's timeouts use SIGALRM, which only the main thread may set, and the reward also runs in trainer and
    engine threads: elsewhere they are off, and answers that could run for ever (`_HUGE_POWER`) are not tried.
    Anything math-verify cannot read counts as wrong; nothing raises.
    """
    if normalise_text(predicted) == normalise_text(reference):
        return True
    if checker == "exact" or _HUGE_POWER.search(predicted):
        return False
    parse, verify = _math_verify()
    seconds = _MATH_TIMEOUT if threading.current_thread() is threading.main_thread() else None
    try:
        reference, predicted = _plain(reference), _plain(predicted)
        gold = parse(_as_latex(reference), parsing_timeout=seconds) or parse(reference, parsing_timeout=seconds)
        answer = parse(_as_latex(predicted), parsing_timeout=seconds) + parse(predicted, parsing_timeout=seconds)
        # gold first: verify is not symmetric (the gold side decides, for one, whether "(1, 2)" is an interval)
        return bool(gold and answer and verify(gold, answer, timeout_seconds=seconds))
    except Exception:  # math-verify and sympy raise many types on odd input; a malformed answer is a wrong one
        return False


def _plain(text: str) -> str:
    """``text`` with LaTeX's escaped dollar (a currency sign) dropped and a Unicode minus made ASCII."""
    return text.replace("\\$", "").replace("\u2212", "-")


def _as_latex(text: str) -> str:
    """``text`` in $...$ unless it has math delimiters already: math-verify reads LaTeX only inside them."""
    return text if any(d in text for d in ("$", "\\(", "\\[")) else f"${text}$"


@functools.cache
def _math_verify():
    """math-verify's ``parse`` and ``verify``, imported once, with its warning that timeouts are off silenced
    (they are off on purpose, see `is_correct`)."""
    from math_verify import parse, verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(lambda record: not record.getMessage().startswith("Timeout is disabled"))
    return parse, verify


def verifiable_rewards(
    completions: Sequence[str], references: Sequence[str], checker: Checker | Sequence[Checker]
) -> VerifiableResult:
    """R_VR of each completion against its reference: 1.0 when its `extract_answer` `is_correct`, else 0.0 (wrong,
    or no answer). ``checker`` is one for all, or one per completion. Raises ValueError when the lengths differ."""
    checkers = [checker] * len(completions) if isinstance(checker, str) else list(checker)
    if not len(completions) == len(references) == len(checkers):
        raise ValueError(
            f"{len(completions)} completions, {len(references)} references and {len(checkers)} checkers; "
            "give one of each per completion"
        )
    answers = [extract_answer(text) for text in completions]
    rewards = [
        float(answer is not None and is_correct(answer, reference, check))
        for answer, reference, check in zip(answers, references, checkers)
    ]
    missing = sum(answer is None for answer in answers)
    right = int(sum(rewards))
    return VerifiableResult(rewards, answers, right, len(rewards) - right - missing, missing)
