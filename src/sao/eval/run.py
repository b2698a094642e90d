"""``sao eval``: candidates A against a baseline B on an instruction set, judged pairwise in both orders.

Layout of an eval directory::

    eval.yaml                      the validated config, defaults filled in
    baseline/answers/turn-K/       B's answers to turn K, when B is a model (resumable generate stages)
    baseline/model_outputs.json    B's answers in AlpacaEval format (alpaca_eval --reference_outputs)
    baseline/model_answer/B.jsonl  and as a FastChat MT-Bench answer file
    <A>/answers/turn-K/            each candidate's answers to turn K, when it is a model
    <A>/judge/verdicts.jsonl       both-order verdicts per instruction (resumable)
    <A>/model_outputs.json, <A>/model_answer/<A>.jsonl
    summary.json, report.md        win rate, LC win rate, position consistency per candidate
    win_rates.png, lengths.png     per-candidate win rates (two or more), answer length distributions

Answers and verdicts are stored by instruction id, so a killed eval resumes where it stopped.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from sao.embedded_models import EMBEDDED_MODELS
from sao.engine.factory import engine_model_info
from sao.engine.lazy import LazyEngine, lazy_engine
from sao.engine.types import Engine
from sao.errors import ConfigError, InputError
from sao.eval import pairwise
from sao.eval.config import EvalConfig
from sao.eval.formats import (
    Answers,
    Instruction,
    Output,
    read_instructions,
    read_outputs,
    write_alpaca_eval,
    write_mt_bench_answers,
)
from sao.eval.pairwise import PairItem, run_pairwise
from sao.eval.report import write_eval_report
from sao.eval.summary import Comparison, summarise
from sao.judge.build import Judge, build_judge
from sao.judge.config import SELF
from sao.rain.config import StrategySection, decoding_identity
from sao.rain.engine import wrap_engine
from sao.stages.generate import ChatPrompt, GenerateConfig, run_generate

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    comparisons: list[Comparison]
    baseline: Answers
    candidates: list[Answers]
    report: Path


@dataclass(frozen=True)
class Side:
    """One side's answers, and for a model the engine and model info that made them (None for a file)."""

    answers: Answers
    engine: LazyEngine | None = None
    model_info: dict[str, Any] | None = None

    def release(self) -> None:
        if self.engine:
            self.engine.release()


def is_answer_file(spec: str) -> bool:
    """A spec naming an existing file is an answer file; anything else (directory, alias, hub id) is a model."""
    return Path(spec).is_file()


def default_name(spec: str) -> str:
    """A display name: the file's generator (or stem), the alias, or the model directory's or hub id's last part."""
    if is_answer_file(spec):
        generators = {o.generator for o in read_outputs(spec).values()} - {None}
        return generators.pop() if len(generators) == 1 else Path(spec).stem
    if spec in EMBEDDED_MODELS:
        return spec
    return Path(spec.rstrip("/")).name


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def user_turns(instruction: Instruction) -> list[str]:
    """The user turns a model answers one after another (MT-Bench with turns 'all' has two)."""
    roles = {m["role"] for m in instruction.messages}
    if "assistant" in roles:
        raise InputError(
            f"instruction '{instruction.id}': has assistant messages; sao eval answers the user turns itself"
        )
    return [m["content"] for m in instruction.messages if m["role"] == "user"]


def judged_pair(instruction: Instruction, a: Output, b: Output) -> PairItem:
    """What the judge sees. One turn: the request and the two answers. Several turns: the user turns and each
    model's answers as numbered transcripts, so the later answers are judged in the context they answer."""
    users = user_turns(instruction)
    if len(users) == 1:
        return PairItem(instruction.id, users[0], a.text, b.text)

    def transcript(texts: list[str] | tuple[str, ...]) -> str:
        return "\n\n".join(f"[Turn {k}] {text}" for k, text in enumerate(texts, 1))

    n = len(users)
    return PairItem(
        instruction.id, transcript(users), transcript([a.text, *a.later][:n]), transcript([b.text, *b.later][:n])
    )


def read_answers(spec: str, name: str, instructions: list[Instruction]) -> Answers:
    """An answer file's answers to ``instructions``; every instruction must have one per user turn."""
    outputs = read_outputs(spec)
    missing = [i.id for i in instructions if i.id not in outputs]
    if missing:
        raise InputError(
            f"{spec}: no answer for {len(missing)} of {len(instructions)} instructions (first: id '{missing[0]}'); "
            "answer files are matched to instructions by id (AlpacaEval files: by position)"
        )
    for i in instructions:
        answered, asked = 1 + len(outputs[i.id].later), len(user_turns(i))
        if answered < asked:
            raise InputError(f"{spec}: id '{i.id}' answers {answered} turn(s) of {asked}; use turns 'first'")
    return Answers(name, spec, True, {i.id: outputs[i.id] for i in instructions})


def generate_answers(
    engine: Engine,
    spec: str,
    name: str,
    instructions: list[Instruction],
    config: EvalConfig,
    out_dir: Path,
    *,
    model_info: dict[str, Any],
    **kw,
) -> Answers:
    """A model's answers to ``instructions``, turn by turn, each turn a resumable generate stage in
    ``out_dir``/turn-K: turn K's prompt holds the user's turns and the model's own answers before it.
    ``model_info`` (`engine_model_info` of ``spec``) goes into each turn's manifest."""
    d = config.decoding
    settings = GenerateConfig(
        model=spec, n=1, temperature=d.temperature, top_p=d.top_p, max_new_tokens=d.max_new_tokens, seed=d.seed
    )
    turns = {i.id: user_turns(i) for i in instructions}
    answers: dict[str, list[dict[str, Any]]] = {i.id: [] for i in instructions}
    for k in range(1, max(len(t) for t in turns.values()) + 1):
        prompts = [
            ChatPrompt(id=i.id, messages=_with_system(_conversation(turns[i.id][:k], answers[i.id]), d.system))
            for i in instructions
            if len(turns[i.id]) >= k
        ]
        store, _ = run_generate(engine, settings, prompts, out_dir / f"turn-{k}", model_info=model_info, **kw)
        rows = {row["id"]: row for row in store.rows("generations")}
        for p in prompts:
            answers[p.id].append(rows[p.id]["samples"][0])
    outputs = {
        i: Output(i, samples[0]["text"], name, tuple(s["text"] for s in samples[1:])) for i, samples in answers.items()
    }
    truncated = sum(s["finish_reason"] == "length" for samples in answers.values() for s in samples)
    return Answers(name, spec, False, outputs, truncated)


def _conversation(users: list[str], answers: list[dict[str, Any]]) -> list[dict[str, str]]:
    """User turns interleaved with the model's answers to all but the last."""
    messages = []
    for k, text in enumerate(users):
        messages.append({"role": "user", "content": text})
        if k < len(answers):
            messages.append({"role": "assistant", "content": answers[k]["text"]})
    return messages


def _with_system(messages: list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, *messages] if system else messages


def _names(config: EvalConfig) -> tuple[str, list[str]]:
    names = list(config.names) or [default_name(spec) for spec in config.candidates]
    baseline = config.baseline_name or default_name(config.baseline)
    repeated = [n for n, count in Counter(slug(n) for n in [*names, baseline]).items() if count > 1]
    if repeated or "baseline" in map(slug, names):
        clash = repeated[0] if repeated else "baseline"
        raise ConfigError(f"names: '{clash}' names two sides of the comparison; give each candidate a distinct name")
    return baseline, names


def _check_judge(config: EvalConfig) -> None:
    """Fail before any work when the judge cannot be loaded for every comparison."""
    if config.judge.model != SELF:
        return
    files = [spec for spec in config.candidates if is_answer_file(spec)]
    if files:
        raise ConfigError(
            f"judge.model: 'self' needs model candidates, but {files[0]} is an answer file; name a judge model"
        )


def run_eval(config: EvalConfig, out_dir: str | Path, *, force: bool = False, progress: bool = True) -> EvalResult:
    """Generate what is missing, judge every candidate against the baseline, and write exports and the report."""
    out_dir = Path(out_dir)
    _check_judge(config)
    baseline_name, names = _names(config)
    instructions = load_instructions(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.yaml").write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
    run = {"force": force, "progress": progress}

    # The baseline answers by plain sampling; with decoding.strategy rain the candidates answer by RAIN.
    baseline_dir = out_dir / "baseline"
    baseline = answer_side(config.baseline, baseline_name, instructions, config, baseline_dir, rain=False, **run)
    baseline.release()
    _export(baseline.answers, instructions, out_dir / "baseline")
    # A named judge is built once and scores every candidate; a 'self' judge is each candidate's own engine.
    shared = None if config.judge.model == SELF else eval_judge(config, None, progress=progress)
    comparisons, candidates = [], []
    for spec, name in zip(config.candidates, names):
        root = out_dir / slug(name)
        side = answer_side(spec, name, instructions, config, root, rain=True, **run)
        comparisons.append(judge_candidate(side, baseline.answers, instructions, config, shared, root, **run))
        _export(side.answers, instructions, root)
        candidates.append(side.answers)
    if shared:
        shared.release()
    report = write_eval_report(out_dir, comparisons, baseline.answers, candidates)
    return EvalResult(comparisons, baseline.answers, candidates, report)


def load_instructions(config: EvalConfig) -> list[Instruction]:
    """The instructions to answer (the first ``limit``); bad items fail here, before any model is loaded."""
    instructions = read_instructions(config.instructions, turns=config.turns)[: config.limit]
    for instruction in instructions:
        user_turns(instruction)
    return instructions


def answer_side(
    spec: str,
    name: str,
    instructions: list[Instruction],
    config: EvalConfig,
    root: Path,
    *,
    rain: bool,
    force: bool,
    progress: bool,
) -> Side:
    """A side's answers: read from an answer file, or generated (resumably) under ``root``/answers by the model
    ``spec``, whose engine stays loaded for a 'self' judge. With ``rain`` the answers are decoded as
    ``decoding.strategy`` says (RAIN settings enter the answers' manifest); the judge always gets the plain
    engine."""
    if is_answer_file(spec):
        return Side(read_answers(spec, name, instructions))
    engine = lazy_engine(spec, config.engine, trust_remote_code=config.trust_remote_code, progress=progress)
    info = engine_model_info(spec, config.engine)
    strategy = config.decoding if rain else StrategySection()
    answers = generate_answers(
        wrap_engine(engine, strategy, progress=progress),
        spec,
        name,
        instructions,
        config,
        root / "answers",
        model_info=info | decoding_identity(strategy),
        force=force,
        progress=progress,
    )
    return Side(answers, engine, info)


def eval_judge(config: EvalConfig, side: Side | None, *, progress: bool) -> Judge:
    """The judge ``config`` names (``side`` None), or for 'self' the candidate ``side``'s own engine."""
    return build_judge(
        config.judge,
        policy_engine=side.engine if side else None,
        policy_model=side.answers.spec if side else None,
        engine_settings=config.engine,
        trust_remote_code=config.trust_remote_code,
        progress=progress,
    )


def judge_candidate(
    side: Side,
    baseline: Answers,
    instructions: list[Instruction],
    config: EvalConfig,
    shared: Judge | None,
    root: Path,
    *,
    force: bool,
    progress: bool,
) -> Comparison:
    """``side`` against ``baseline``, every pair judged in both orders (resumably) under ``root``/judge, by the
    ``shared`` judge or, with none, by the candidate itself; the candidate's engine is released after."""
    name = side.answers.name
    if shared:
        side.release()  # the candidate's answers are written; only the judge is needed now
        judge, judge_info, judged_by = shared, shared.identity(), shared.label
    else:
        judge = eval_judge(config, side, progress=progress)
        # The judge is the candidate: its manifest records the model info hashed when it answered.
        judge_info, judged_by = side.model_info, f"{name} ({judge.label})"
    items = [judged_pair(i, side.answers.outputs[i.id], baseline.outputs[i.id]) for i in instructions]
    log.info("judging %s against %s with %s (%d pairs, both orders)", name, baseline.name, judged_by, len(items))
    store, _ = run_pairwise(
        judge.engine, items, config.judge, root / "judge", model_info=judge_info, force=force, progress=progress
    )
    side.release()
    # AlpacaEval's instruction_difficulty where the instruction file has it; summarise uses it only when every
    # judged instruction has one. sao estimates none itself: see docs/evaluation.md.
    return summarise(
        store.rows(pairwise.STAGE),
        name,
        baseline.name,
        truncated_a=side.answers.truncated,
        n_boot=config.n_boot,
        difficulty={i.id: i.difficulty for i in instructions},
        judge=judged_by,
    )


def _export(side: Answers, instructions: list[Instruction], root: Path) -> None:
    """AlpacaEval and MT-Bench files, so the official tools can score the same answers with a strong judge.

    AlpacaEval is single-turn, so its file holds the first turn of each instruction; the MT-Bench file holds
    every answered turn.
    """
    first_turns = [replace(i, messages=[m for m in i.messages if m["role"] == "user"][:1]) for i in instructions]
    write_alpaca_eval(root / "model_outputs.json", first_turns, side.outputs, side.name)
    write_mt_bench_answers(root / "model_answer" / f"{slug(side.name)}.jsonl", instructions, side.outputs, side.name)


def with_run_iterations(values: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """An eval section (``values``) with a `sao run` directory's finished iterations added as candidates.

    The iterations come after any candidates already in ``values``, named ``iter-K`` (names already given
    are kept, and must then name every candidate). Where ``values`` names none, the run's starting model
    is the baseline (did the iterations beat the model they started from?) and the judge: one fixed judge
    scores every iteration, so their win rates compare. With ``judge.model: self`` (SAO's own setting) each
    iteration would judge its own comparison, so each win rate would come from a different judge, with
    that judge's preference for its own answers built in.
    Raises InputError as `run_iterations` does.
    """
    start, specs, names = run_iterations(run_dir)
    out = dict(values)
    earlier = list(out.get("candidates") or [])
    out["candidates"] = earlier + specs
    if not out.get("names"):
        out["names"] = [default_name(spec) for spec in earlier] + names
    return with_starting_model(out, start)


def with_starting_model(values: dict[str, Any], model: str) -> dict[str, Any]:
    """``values`` with ``model`` (a run's starting model) as the baseline and the judge where it names none."""
    out = dict(values)
    out.setdefault("baseline", model)
    judge = dict(out.get("judge") or {})
    judge.setdefault("model", model)
    out["judge"] = judge
    return out


def run_iterations(run_dir: str | Path) -> tuple[str, list[str], list[str]]:
    """A `sao run` directory's starting model, and each finished iteration's model and name, oldest first."""
    run_dir = Path(run_dir)
    recipe = run_dir / "recipe.yaml"
    if not recipe.is_file():
        raise InputError(f"{run_dir}: not a sao run directory (no recipe.yaml)")
    start = str(yaml.safe_load(recipe.read_text()).get("model"))
    specs, names = [], []
    while (run_dir / f"iter-{len(specs) + 1}" / "model" / "config.json").is_file():
        specs.append(str(run_dir / f"iter-{len(specs) + 1}" / "model"))
        names.append(f"iter-{len(specs)}")
    if not specs:
        raise InputError(f"{run_dir}: no finished iteration (no iter-1/model)")
    return start, specs, names
