"""The MT-Bench files the judge benchmarks read, from the copies in this repository.

``tests/data/mt_bench/`` holds the questions and the gpt-4 and alpaca-13b answers (the tests
read them too); ``benchmarks/data/mt_bench/`` adds the gpt-3.5-turbo and llama-13b answers.
Both are FastChat's files under Apache-2.0, with a README naming source and licence.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPO_COPIES = (ROOT / "benchmarks" / "data" / "mt_bench", ROOT / "tests" / "data" / "mt_bench")


def mt_bench_file(relative: str, root: Path | None = None) -> Path:
    """``relative`` (``question.jsonl``, ``model_answer/<model>.jsonl``) in ``root``, or in the repository's copies.

    ``root`` is a FastChat MT-Bench data directory; without it the repository's copies are
    searched in turn. Raises FileNotFoundError naming every place looked in.
    """
    places = [root] if root is not None else list(REPO_COPIES)
    for place in places:
        if (place / relative).is_file():
            return place / relative
    raise FileNotFoundError(f"{relative}: not in {', '.join(str(p) for p in places)}")


def answers_file(model: str, root: Path | None = None) -> Path:
    """The answer file of ``model`` (e.g. ``gpt-4``), as `mt_bench_file`."""
    return mt_bench_file(f"model_answer/{model}.jsonl", root)
