"""Scoring every candidate answer at once on a 0-6 additive rubric, and reading the scores back.

DNO's annotator sees all candidates for a prompt side by side and gives each a score (the paper's
6-point additive scale). The request below is sao's own wording of that idea: one point per
criterion met, so a score is a count a small judge can make.
"""

from __future__ import annotations

import re

RUBRIC_TEMPLATE = """Below is a user's request and {count} candidate responses. Score each response from 0 to 6 by \
adding one point for each of these that it does:
1. it addresses the request at all;
2. it is correct, with no false statements;
3. it covers what the request asks for, not just part of it;
4. it is clear and well organised;
5. it is concise, with no padding or repetition;
6. it reads as written by a careful expert.

Request:
{prompt}

{responses}

Answer with one line per response and nothing else, in this form:
Response 1: <score>
Response 2: <score>"""

_LINE = re.compile(r"^\W*response\s*(\d+)\W*?[:=-]\s*(\d+(?:\.\d+)?)\s*(?:/\s*6)?\b", re.IGNORECASE | re.MULTILINE)


def rubric_request(prompt: str, candidates: list[str], template: str = RUBRIC_TEMPLATE) -> str:
    responses = "\n\n".join(f"Response {i}:\n{text}" for i, text in enumerate(candidates, start=1))
    return (
        template.replace("{count}", str(len(candidates))).replace("{prompt}", prompt).replace("{responses}", responses)
    )


def parse_scores(text: str, count: int) -> list[float] | None:
    """The score of each of ``count`` candidates, or None unless every one is there exactly once, in 0..6.

    Malformed judge output is a dropped row (counted), never a guess: a missing, repeated or
    out-of-range score voids the whole line-up.
    """
    found: dict[int, float] = {}
    for match in _LINE.finditer(text):
        index, score = int(match.group(1)), float(match.group(2))
        if index in found or not 1 <= index <= count or not 0 <= score <= 6:
            return None
        found[index] = score
    if sorted(found) != list(range(1, count + 1)):
        return None
    return [found[i] for i in range(1, count + 1)]
