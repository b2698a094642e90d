"""``sao eval --verifiable FILE``: each candidate model's accuracy on a verifiable task set.

Every model answers every task greedily (temperature 0), asked to end with ``Answer: <final answer>``
(`sao.rewards.tasks.task_prompt`), and each answer scores R_VR alone (`sao.rewards.verifiable`): 1 when its final
answer matches the reference, else 0. The self-aligned reward (`sao.rewards.sar`) is a training signal only; it
never enters an evaluation, so a model cannot raise its accuracy by being concise rather than right.

Layout of the eval directory::

    <A>/verifiable/generations.jsonl   candidate A's answers, a resumable generate stage (with its manifest)
    verifiable.json, verifiable.md     accuracy with a 95% Wilson interval, answers with no Answer: line, and the
                                       mean answer length in tokens, per candidate
    verifiable.png                     the same, plotted

Answers are stored by task id, so a killed eval resumes, and a finished candidate never loads its model again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sao import __version__
from sao.engine.config import EngineSection
from sao.engine.types import Engine, SamplingParams
from sao.errors import ConfigError, InputError
from sao.eval.config import DecodingSection
from sao.eval.judge_eval import wilson
from sao.eval.run import default_name, is_answer_file, slug
from sao.recipe import validate
from sao.rewards.tasks import Task, TaskSource, load_tasks, task_prompt
from sao.rewards.verifiable import verifiable_rewards

SCORE = (
    "R_VR: 1 when the last 'Answer:' line matches the reference (math-verify for numbers and expressions, so "
    "1,000 = 1000 and 1/2 = 0.5), else 0; an answer with no such line scores 0 and is counted as 'no answer'."
)
_CHUNK = 32  # prompts per engine call: the progress bar's step; engines batch within it


@dataclass(frozen=True)
class CandidateAccuracy:
    """One model on a task set: ``correct`` of ``n`` tasks, ``accuracy`` with its 95% Wilson interval
    [``low``, ``high``], the mean answer length in tokens, and how many answers had no ``Answer:`` line."""

    n: int
    correct: int
    accuracy: float
    low: float
    high: float
    mean_tokens: float
    no_answer: int


@dataclass(frozen=True)
class Candidate:
    """A model to evaluate (``spec``: alias, directory or hub id) and its display name."""

    name: str
    spec: str


def summarise_accuracy(texts: Sequence[str], num_tokens: Sequence[int], tasks: Sequence[Task]) -> CandidateAccuracy:
    """The accuracy of the answers ``texts`` (of ``num_tokens`` tokens each) to ``tasks``, in the same order.

    Raises InputError when there are no tasks, ValueError when the three lengths differ.
    """
    if not tasks:
        raise InputError("no tasks to score: the task set is empty")
    if not len(texts) == len(num_tokens) == len(tasks):
        raise ValueError(f"{len(texts)} answers and {len(num_tokens)} token counts for {len(tasks)} tasks")
    result = verifiable_rewards(texts, [t.answer for t in tasks], [t.checker for t in tasks])
    interval = wilson(result.rewards)
    return CandidateAccuracy(
        n=len(tasks),
        correct=result.correct,
        accuracy=interval.rate,
        low=interval.low,
        high=interval.high,
        mean_tokens=round(sum(num_tokens) / len(tasks), 2),
        no_answer=result.no_answer,
    )


def greedy(max_new_tokens: int) -> SamplingParams:
    """How every verifiable answer is decoded: one greedy sample of at most ``max_new_tokens`` tokens."""
    return SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)


def evaluate_verifiable(
    engine: Engine, tasks: list[Task], *, max_new_tokens: int, system: str | None = None, progress: bool = True
) -> CandidateAccuracy:
    """``engine``'s accuracy on ``tasks``: each answered greedily in `task_prompt` (after ``system``, if given) with
    at most ``max_new_tokens`` tokens, and scored by R_VR alone. Keeps nothing on disk (`run_verifiable` does).

    Raises InputError for an empty task list.
    """
    if not tasks:
        raise InputError("no tasks to score: the task set is empty")
    params = greedy(max_new_tokens)
    texts, tokens = [], []
    for start in tqdm(range(0, len(tasks), _CHUNK), unit="chunk", desc="verifiable", disable=not progress):
        chunk = tasks[start : start + _CHUNK]
        for completion in engine.generate([task_prompt(t, system) for t in chunk], params):
            texts.append(completion.samples[0].text)
            tokens.append(completion.samples[0].num_tokens)
    return summarise_accuracy(texts, tokens, tasks)


def run_verifiable(
    candidates: Sequence[Candidate],
    tasks: list[Task],
    out_dir: str | Path,
    *,
    engine: EngineSection,
    max_new_tokens: int,
    system: str | None = None,
    trust_remote_code: bool = False,
    force: bool = False,
    progress: bool = True,
) -> list[tuple[Candidate, CandidateAccuracy]]:
    """Each candidate's accuracy on ``tasks``, its answers a resumable generate stage under
    ``out_dir``/<name>/verifiable; writes `write_verifiable_report` in ``out_dir``.

    Raises ResumeConflictError where a candidate's earlier answers were made with other settings, another model or
    other tasks (unless ``force``), as every resumable stage does.
    """
    from sao.engine.factory import engine_model_info
    from sao.engine.lazy import lazy_engine
    from sao.stages.generate import STAGE, ChatPrompt, GenerateConfig, run_generate

    out_dir = Path(out_dir)
    prompts = [ChatPrompt(id=t.id, messages=task_prompt(t, system)) for t in tasks]
    results = []
    for candidate in candidates:
        settings = GenerateConfig(
            model=candidate.spec, n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, system=system
        )
        model = lazy_engine(candidate.spec, engine, trust_remote_code=trust_remote_code, progress=progress)
        store, _ = run_generate(
            model,
            settings,
            prompts,
            out_dir / slug(candidate.name) / "verifiable",
            model_info=engine_model_info(candidate.spec, engine),
            force=force,
            progress=progress,
        )
        model.release()
        answers = {row["id"]: row["samples"][0] for row in store.rows(STAGE)}
        samples = [answers[t.id] for t in tasks]
        accuracy = summarise_accuracy([s["text"] for s in samples], [s["num_tokens"] for s in samples], tasks)
        results.append((candidate, accuracy))
    write_verifiable_report(out_dir, results, max_new_tokens=max_new_tokens, system=system)
    return results


def verifiable_eval(
    values: dict[str, Any], tasks_file: str | Path, out_dir: str | Path, *, force: bool = False, progress: bool = True
) -> list[tuple[Candidate, CandidateAccuracy]]:
    """`run_verifiable` on the tasks of the JSONL ``tasks_file`` (its first ``limit``) for the models an eval
    section ``values`` names (`verifiable_candidates`), with its ``engine``, ``trust_remote_code`` and its
    ``decoding``'s ``max_new_tokens`` and ``system`` (answers are always greedy).

    Raises ConfigError naming the field for a bad section, InputError naming the file and line for a bad task.
    """
    candidates = verifiable_candidates(values)
    decoding = validate(DecodingSection, values.get("decoding") or {})
    engine = validate(EngineSection, values.get("engine") or {})
    tasks = load_tasks(TaskSource(kind="jsonl", path=str(tasks_file)), count=values.get("limit"), seed=0)
    return run_verifiable(
        candidates,
        tasks,
        out_dir,
        engine=engine,
        max_new_tokens=decoding.max_new_tokens,
        system=decoding.system,
        trust_remote_code=bool(values.get("trust_remote_code", False)),
        force=force,
        progress=progress,
    )


def verifiable_candidates(values: dict[str, Any]) -> list[Candidate]:
    """The models an eval section names: its ``baseline`` first (with ``--run``, the run's starting model), then
    its ``candidates`` with their ``names``.

    Raises ConfigError naming the field when there is no model, a candidate is an answer file (the tasks need
    answers of their own), the names do not match the candidates, or two candidates share a name.
    """
    specs = [str(spec) for spec in values.get("candidates") or []]
    names = list(values.get("names") or []) or [default_name(spec) for spec in specs]
    if len(names) != len(specs):
        raise ConfigError(f"names: {len(names)} names for {len(specs)} candidates")
    candidates = [Candidate(name, spec) for name, spec in zip(names, specs)]
    if baseline := values.get("baseline"):
        candidates.insert(0, Candidate(values.get("baseline_name") or default_name(baseline), str(baseline)))
    if not candidates:
        raise ConfigError("candidates: --verifiable needs a model (--model, --run or --baseline)")
    seen = set()
    for c in candidates:
        if is_answer_file(c.spec):
            raise ConfigError(f"candidates: {c.spec} is an answer file; --verifiable needs models to answer its tasks")
        if slug(c.name) in seen:
            raise ConfigError(f"names: '{c.name}' names two candidates; give each a distinct --name")
        seen.add(slug(c.name))
    return candidates


# ------------------------------------------------------------------------------------------------------- the report


def verifiable_markdown(results: Sequence[tuple[Candidate, CandidateAccuracy]], *, max_new_tokens: int) -> str:
    """The table of `write_verifiable_report`, with what its columns mean."""
    lines = [
        "| candidate | model | correct | accuracy | 95% CI (Wilson) | no answer | mean answer tokens |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for c, a in results:
        lines.append(
            f"| {c.name} | `{c.spec}` | {a.correct} / {a.n} | {a.accuracy:.1%} | {a.low:.1%} - {a.high:.1%} | "
            f"{a.no_answer} | {a.mean_tokens:.1f} |"
        )
    note = (
        f"Each model answered every task greedily (temperature 0, at most {max_new_tokens} new tokens), asked to end "
        f"with a line 'Answer: <final answer>'. Score: {SCORE} The self-aligned reward is a training signal and is "
        "not part of this score. Mean answer tokens: the length of the whole answer, reasoning included."
    )
    return "\n".join(lines) + "\n\n" + note


def plot_verifiable(results: Sequence[tuple[Candidate, CandidateAccuracy]], path: Path) -> Path:
    """Accuracy with its Wilson interval, and mean answer tokens, per candidate, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.name for c, _ in results]
    accuracy = [a for _, a in results]
    x = list(range(len(results)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(7.0, 1.6 * len(x) + 4), 3.6))
    left.errorbar(
        x,
        [100 * a.accuracy for a in accuracy],
        yerr=[[100 * (a.accuracy - a.low) for a in accuracy], [100 * (a.high - a.accuracy) for a in accuracy]],
        fmt="o",
        capsize=4,
    )
    left.set_xticks(x, names)
    left.set_ylim(0, 100)
    left.set_ylabel("accuracy %")
    left.set_title("Accuracy (95% Wilson interval)")
    right.bar(x, [a.mean_tokens for a in accuracy], color="tab:orange")
    right.set_xticks(x, names)
    right.set_ylabel("tokens")
    right.set_title("Mean answer length")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_verifiable_report(
    out_dir: Path,
    results: Sequence[tuple[Candidate, CandidateAccuracy]],
    *,
    max_new_tokens: int,
    system: str | None,
) -> Path:
    """verifiable.json, verifiable.md and verifiable.png in ``out_dir``; returns the markdown's path."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    summary = {
        "sao_version": __version__,
        "created_at": created,
        "score": SCORE,
        "max_new_tokens": max_new_tokens,
        "system": system,
        "candidates": [{"name": c.name, "model": c.spec, **asdict(a)} for c, a in results],
    }
    (out_dir / "verifiable.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot = plot_verifiable(results, out_dir / "verifiable.png")
    text = f"# sao eval --verifiable ({created})\n\n{verifiable_markdown(results, max_new_tokens=max_new_tokens)}"
    path = out_dir / "verifiable.md"
    path.write_text(f"{text}\n\n![{plot.stem}]({plot.name})\n")
    return path
