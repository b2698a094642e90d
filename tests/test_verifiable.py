"""The verifiable reward: reading the final answer, comparing it with the reference, counting the outcomes."""

from __future__ import annotations

import threading

import pytest

from sao.rewards.verifiable import ANSWER_INSTRUCTION, extract_answer, is_correct, verifiable_rewards


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("6 * 7 = 42.\nAnswer: 42", "42"),
        ("Answer: 42.", "42"),
        ("**Answer:** 42", "42"),
        ("**Answer**: **42**", "42"),
        ("ANSWER:   1/2  \n", "1/2"),
        ("The final answer: $\\frac{1}{2}$", "$\\frac{1}{2}$"),
        ("Answer: 3\nWait, I made a mistake.\nAnswer: 5", "5"),  # the last one counts
        ("answer: Paris\nThanks!", "Paris"),  # up to the end of its line
        ("Answer: 3.5.", "3.5"),  # only the trailing full stop goes
        # Where there is no Answer: line, the two other conventions (SmolLM2-135M writes the first one).
        ("23 - 12 + 18 = 30\n\nThe answer is 30.", "30"),
        ("So, the final answer is 3. Then more text.\n", "3"),
        ("#### 7\nThe answer is: 8", "8"),  # the last one counts
        ("The answer is 2.5", "2.5"),
        ("Half of 48 is 24.\n#### 72", "72"),
        ("The answer is 4.\nAnswer: 5", "5"),  # the asked form wins
    ],
)
def test_extract_answer_reads_the_last_answer_line(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    "text", ["The result is 42.", "", "Answer:", "**Answer:** **", "Answers: 4", "reanswer: 3", "The answer is."]
)
def test_extract_answer_is_none_without_an_answer(text):
    assert extract_answer(text) is None


def test_the_instruction_asks_for_the_line_extract_answer_reads():
    assert "Answer: <final answer>" in ANSWER_INSTRUCTION


@pytest.mark.parametrize(
    ("predicted", "reference"),
    [
        ("18", "18"),
        ("1,000", "1000"),
        ("1000", "1,000"),
        ("$18", "18"),
        ("\\$18", "18"),
        ("18.0", "18"),
        ("18 dollars", "18"),
        ("1/2", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt 3}{2}"),
        ("\u22123", "-3"),  # a Unicode minus
        ("x + 1", "1 + x"),
    ],
)
def test_math_answers_equal_as_mathematics(predicted, reference):
    assert is_correct(predicted, reference, "math")


@pytest.mark.parametrize(
    ("predicted", "reference"),
    [("17", "18"), ("-18", "18"), ("1/3", "0.5"), ("eighteen", "18"), ("", "18"), ("x", "18"), ("10^10^10", "18")],
)
def test_wrong_math_answers_are_wrong(predicted, reference):
    assert not is_correct(predicted, reference, "math")


def test_math_checking_works_outside_the_main_thread():
    # math-verify's default timeouts use SIGALRM, which raises outside the main thread.
    cases = [("1,000", "1000", True), ("17", "18", False), ("10^10^10", "18", False)]
    results = []
    worker = threading.Thread(target=lambda: results.extend(is_correct(p, r, "math") for p, r, _ in cases))
    worker.start()
    worker.join(timeout=60)
    assert results == [expected for _, _, expected in cases]


def test_exact_answers_ignore_case_and_whitespace_only():
    assert is_correct("  New   York ", "new york", "exact")
    assert not is_correct("1,000", "1000", "exact")
    assert not is_correct("Paris.", "Paris", "exact")


def test_verifiable_rewards_score_and_count_every_completion():
    completions = [
        "2 + 2 = 4\nAnswer: 4",
        "**Answer:** 1,000",
        "Answer: 7",  # wrong
        "I think it is 9.",  # no answer line
        "Answer: \\frac{1}{0",  # malformed LaTeX: wrong, not an error
    ]
    result = verifiable_rewards(completions, ["4", "1000", "8", "9", "2"], "math")
    assert result.rewards == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert result.answers == ["4", "1,000", "7", None, "\\frac{1}{0"]
    assert (result.correct, result.wrong, result.no_answer) == (2, 2, 1)


def test_verifiable_rewards_take_a_checker_per_completion():
    result = verifiable_rewards(["Answer: 1,000", "Answer: 1,000"], ["1000", "1000"], ["math", "exact"])
    assert result.rewards == [1.0, 0.0]
    with pytest.raises(ValueError, match="2 completions, 1 references"):
        verifiable_rewards(["Answer: 1", "Answer: 2"], ["1"], "math")
