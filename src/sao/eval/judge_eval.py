"""``sao judge-eval``: how often a judge agrees with labelled pairs, next to a "prefer the longer" baseline.

This is how a user decides whether a model is strong enough to judge itself: a judge that does not
beat the length baseline, or that flips its verdict when the answers swap places, adds noise, not
signal, to self-alignment. ``judge.signal: sar`` measures SAR under the judge model the same way: it
prefers the answer with the higher self-aligned reward, and has no position bias to measure.
``judge.signal: rain`` measures RAIN's self-evaluator (`sao.judge.rain`): it prefers the answer it finds likelier
to meet its criterion, and the report adds how often it calls the better answer good and the worse one bad.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sao.engine.capabilities import require_capabilities
from sao.errors import InputError, SaoError
from sao.eval import pairwise
from sao.eval.config import JudgeEvalConfig
from sao.eval.metrics import prefer_longer
from sao.eval.pairwise import PairItem, run_pairwise, verdict_stats
from sao.jsonl import read_jsonl
from sao.judge.build import build_judge
from sao.judge.config import PROMPT, RAIN, SAR, JudgeSection
from sao.judge.rain import RAIN_JUDGE_NEEDS
from sao.judge.sar import SAR_NEEDS, sar_label
from sao.stage import drop_stats, kept

LABELS = ("a", "b", "tie")
Z95 = 1.959964


@dataclass(frozen=True)
class LabelledPair:
    item: PairItem
    label: str


@dataclass(frozen=True)
class Agreement:
    """Mean agreement with the labels (0-1) and its 95% Wilson interval."""

    rate: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class JudgeEvalResult:
    pairs: int  # judged (the prompted judge: in both orders) and kept
    dropped: dict[str, int]
    labels: dict[str, int]  # count per label over the kept pairs
    judge: Agreement
    longer: Agreement  # the "prefer the longer response" baseline on the same pairs
    # Both None for SAR, which shows no order: its position consistency is 1 by construction, not measured.
    position_consistency: float | None
    first_slot_win_share: float | None
    signal: str = PROMPT  # judge.signal: what the verdicts came from
    self_evaluation: dict[str, Any] | None = None  # signal 'rain': `rain_vote_shares`

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_labelled_pairs(path: str | Path) -> list[LabelledPair]:
    """Rows with ``prompt``, ``response_a``, ``response_b`` and ``label`` (a, b or tie); ``id`` optional.

    Raises InputError naming the file and line for a missing field, an empty prompt, an unknown label or a
    repeated id.
    """
    pairs, seen = [], {}
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
            raise InputError(f"{where}: needs a non-empty 'prompt' string")
        for key in ("response_a", "response_b"):  # an empty answer is a (bad) answer, so it is allowed
            if not isinstance(obj.get(key), str):
                raise InputError(f"{where}: needs a '{key}' string")
        label = str(obj.get("label", "")).strip().lower()
        if label not in LABELS:
            raise InputError(f"{where}: 'label' must be one of a, b, tie; got {obj.get('label')!r}")
        pair_id = str(obj.get("id", lineno))
        if pair_id in seen:
            raise InputError(f"{where}: id '{pair_id}' already used on line {seen[pair_id]}")
        seen[pair_id] = lineno
        pairs.append(LabelledPair(PairItem(pair_id, obj["prompt"], obj["response_a"], obj["response_b"]), label))
    if not pairs:
        raise InputError(f"{path}: no labelled pairs")
    return pairs


def verdict(preference: float) -> str:
    return "a" if preference > 0.5 else "b" if preference < 0.5 else "tie"


def agreement_score(predicted: str, label: str) -> float:
    """1 when the verdicts match, 0 when they are opposite, and a half when exactly one of them is a tie."""
    if predicted == label:
        return 1.0
    return 0.5 if "tie" in (predicted, label) else 0.0


def wilson(scores: list[float]) -> Agreement:
    """Mean agreement with a 95% Wilson score interval (treating half-agreements as half a success).

    Wilson rather than mean +- 1.96 s.e., because agreement rates sit near 0 or 1 for strong or hopeless
    judges, where the normal interval runs past the ends.
    """
    n = len(scores)
    p = sum(scores) / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return Agreement(round(p, 4), round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4), n)


def rain_vote_shares(rows: list[dict[str, Any]], truth: list[str]) -> dict[str, Any]:
    """How RAIN's evaluator voted on the labelled-better and labelled-worse answers of ``rows`` (`RainVerdict`s;
    tied labels left out): the share of each it called good (v = +1), undecided (0) and bad (-1)."""
    better, worse = [], []
    for row, label in zip(rows, truth):
        if label != "tie":
            better.append(row["vote_a"] if label == "a" else row["vote_b"])
            worse.append(row["vote_b"] if label == "a" else row["vote_a"])

    def shares(votes: list[int]) -> dict[str, float]:
        return {
            name: round(votes.count(v) / len(votes), 4) if votes else 0.0
            for name, v in (("good", 1), ("undecided", 0), ("bad", -1))
        }

    return {"pairs": len(better), "better": shares(better), "worse": shares(worse)}


def evaluate_verdicts(rows: list[dict[str, Any]], labels: dict[str, str], signal: str = PROMPT) -> JudgeEvalResult:
    """Agreement of the judge's and the length baseline's verdicts with ``labels`` (by pair id); ``rows`` are
    `sao.eval.pairwise` verdicts of ``signal``'s kind (SAR's and RAIN's carry no order, hence no position
    statistics; RAIN's add `rain_vote_shares`)."""
    good = kept(rows)
    stats = verdict_stats(rows) if signal == PROMPT else drop_stats(rows)
    if not good:
        raise SaoError(f"no labelled pair was judged in both orders ({stats['dropped']}); no agreement to report")
    truth = [labels[r["id"]] for r in good]
    judge = [agreement_score(verdict(r["preference"]), t) for r, t in zip(good, truth)]
    longer_prefs = prefer_longer([r["len_a"] for r in good], [r["len_b"] for r in good])
    longer = [agreement_score(verdict(p), t) for p, t in zip(longer_prefs, truth)]
    return JudgeEvalResult(
        pairs=len(good),
        dropped=stats["dropped"],
        labels={label: truth.count(label) for label in LABELS},
        judge=wilson(judge),
        longer=wilson(longer),
        position_consistency=stats.get("position_consistency"),
        first_slot_win_share=stats.get("first_slot_win_share"),
        signal=signal,
        self_evaluation=rain_vote_shares(good, truth) if signal == RAIN else None,
    )


def judge_name(judge: JudgeSection) -> str:
    """The judge under test as reports name it: its model, or SAR or RAIN's self-evaluation under its model."""
    if judge.signal == RAIN:
        return f"RAIN self-evaluation ({judge.rain_criterion}) under {judge.model}"
    return sar_label(judge.model) if judge.signal == SAR else judge.model


def rain_markdown(shares: dict[str, Any]) -> str:
    """The self-evaluation part of a 'rain' report: its votes on the better and the worse answers."""

    def row(name: str, s: dict[str, float]) -> str:
        return f"| {name} | {s['good']:.1%} | {s['undecided']:.1%} | {s['bad']:.1%} |"

    return "\n".join(
        [
            "No answer is shown beside another, and each is judged in both option orders, so position bias "
            "cancels by construction. A pair is preferred by the probability the evaluator gives the good "
            "option. The evaluator's votes (v = +1 good, 0 undecided, -1 bad) on the "
            f"{shares.get('pairs', 0)} pairs with a better answer:",
            "",
            "| answer | judged good | undecided | judged bad |",
            "|---|---:|---:|---:|",
            row("labelled better", shares["better"]),
            row("labelled worse", shares["worse"]),
            "",
            "The RAIN paper reports self-evaluation accuracy of 81-98% for 30B-70B models; a small model is expected "
            "to be far below that, and this run says how far for this one.",
            "",
        ]
    )


def result_markdown(result: JudgeEvalResult, judge_name: str) -> str:
    def row(name: str, a: Agreement) -> str:
        return f"| {name} | {a.rate:.1%} | {a.low:.1%} - {a.high:.1%} |"

    labels = ", ".join(f"{k}: {v}" for k, v in result.labels.items())
    dropped = sum(result.dropped.values())
    if result.signal == SAR:
        judged = "scored by SAR, each answer alone"
        position = (
            "Position consistency: 1 by construction, not measured: SAR scores each answer on its own, so neither "
            "is ever shown first. Equal scores (within 1e-9) are a tie."
        )
    elif result.signal == RAIN:
        judged = "judged by RAIN's self-evaluation, each answer alone in both option orders"
        position = rain_markdown(result.self_evaluation or {})
    else:
        judged = "judged in both orders"
        position = (
            f"Position consistency: {result.position_consistency:.1%} of pairs keep their winner when the answers "
            f"swap places; the answer shown first wins {result.first_slot_win_share:.1%} of single-order verdicts."
        )
    return "\n".join(
        [
            f"# sao judge-eval: {judge_name}",
            "",
            f"{result.pairs} labelled pairs {judged} ({labels})"
            + (f"; {dropped} dropped as unparsable" if dropped else "")
            + ".",
            "",
            "| judge | agreement with labels | 95% CI (Wilson) |",
            "|---|---:|---|",
            row(judge_name, result.judge),
            row("prefer the longer response", result.longer),
            "",
            position,
            "A tie on either side counts as half agreement. A judge whose interval overlaps the length baseline's "
            "has not shown that it judges more than length.",
        ]
    )


def run_judge_eval(config: JudgeEvalConfig, out_dir: str | Path, *, force: bool = False, progress: bool = True):
    """Judge the labelled pairs (resumably) and write summary.json and report.md; returns the result.

    Raises CapabilityError, before the judge model loads, for SAR on an engine without `SAR_NEEDS` (RAIN: without
    `RAIN_JUDGE_NEEDS`).
    """
    out_dir = Path(out_dir)
    pairs = read_labelled_pairs(config.pairs)[: config.limit]
    judge = build_judge(
        config.judge,
        policy_engine=None,  # the judge is always named: there is no candidate to judge itself
        policy_model=None,
        engine_settings=config.engine,
        trust_remote_code=config.trust_remote_code,
        progress=progress,
    )
    if config.judge.signal == SAR:
        require_capabilities(judge.settings, SAR_NEEDS, "judge.signal 'sar'")
    if config.judge.signal == RAIN:
        require_capabilities(judge.settings, RAIN_JUDGE_NEEDS, "judge.signal 'rain'")
    store, _ = run_pairwise(
        judge.engine,
        [p.item for p in pairs],
        config.judge,
        out_dir,
        model_info=judge.identity(),
        force=force,
        progress=progress,
    )
    judge.release()
    labels = {p.item.id: p.label for p in pairs}
    result = evaluate_verdicts(store.rows(pairwise.STAGE), labels, config.judge.signal)
    (out_dir / "summary.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    (out_dir / "report.md").write_text(result_markdown(result, judge_name(config.judge)) + "\n")
    return result
