"""The ``sao`` command line. It parses arguments and calls library functions; nothing more."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sao import __version__
from sao.embedded_models import DEFAULT_MODEL, EMBEDDED_MODELS
from sao.errors import ConfigError, SaoError

app = typer.Typer(
    help="Self-alignment of language models: personas -> prompts -> self-judged pairs -> preference optimisation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help=f"Model alias ({', '.join(EMBEDDED_MODELS)}), local HF directory or hub id."),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")]
DtypeOpt = Annotated[str, typer.Option(help="auto (bf16 where supported, else float32), float32, bfloat16, float16.")]
RemoteCodeOpt = Annotated[bool, typer.Option(help="Allow model repos to run their own Python code.")]
BatchOpt = Annotated[int, typer.Option(min=1, help="Sequences decoded together.")]
EngineOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--engine",
        help="Engine setting, e.g. --engine backend=openai --engine openai.base_url=http://localhost:8000/v1 "
        "(repeatable; see the recipe reference's engine section).",
    ),
]
RayOpt = Annotated[bool, typer.Option("--ray", help="Generate on Ray engine actors (engine.ray.* settings).")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Recipe override, e.g. --set judge.mode=generate (repeatable).")
]


def _overrides(engine: list[str] | None, set_: list[str] | None) -> list[str]:
    """``--engine KEY=VALUE`` as the recipe override ``engine.KEY=VALUE``, then the ``--set`` overrides."""
    return [f"engine.{setting}" for setting in engine or []] + list(set_ or [])


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(format="sao: %(message)s", level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("sao").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("huggingface_hub").setLevel(logging.INFO if verbose else logging.ERROR)
    # Through the environment, so that transformers need not be imported for --help;
    # its load-time progress bars and notices drown the ones that matter. A user's own
    # setting of either variable wins.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info" if verbose else "error")
    if not verbose:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging, including transformers'.")] = False,
) -> None:
    _setup_logging(verbose)


@app.command()
def version() -> None:
    """Print the sao version."""
    typer.echo(__version__)


@app.command("prepare-model")
def prepare_model(model: ModelOpt = DEFAULT_MODEL) -> None:
    """Convert an embedded model to HF format in the cache (done on first use otherwise)."""
    from sao.models import resolve_model_path

    typer.echo(resolve_model_path(model))


def _engine(model: str, settings, trust_remote_code: bool, progress: bool = True):
    from sao.engine.factory import build_engine

    return build_engine(model, settings, trust_remote_code=trust_remote_code, progress=progress)


def _engine_settings(
    device: str | None,
    dtype: str | None,
    batch_size: int | None,
    engine: list[str] | None,
    ray: bool,
    recipe_engine: dict | None = None,
):
    """The engine section: a run recipe's ``engine``, then the flags given (None: not given), then ``--engine``."""
    from sao.engine.config import EngineSection
    from sao.recipe import apply_overrides, set_field, validate

    values = dict(recipe_engine or {})
    flags = {"device": device, "dtype": dtype, "batch_size": batch_size, "ray.enabled": True if ray else None}
    for key, value in flags.items():
        if value is not None:
            values = set_field(values, key, value)
    return validate(EngineSection, apply_overrides(values, engine or []))


@app.command()
def chat(
    question: Annotated[str, typer.Argument(help="The user message.")],
    model: ModelOpt = DEFAULT_MODEL,
    system: Annotated[str | None, typer.Option(help="System message.")] = None,
    temperature: Annotated[float, typer.Option(min=0, help="0 is greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0, max=1)] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    engine_: EngineOpt = None,
    set_: SetOpt = None,
    trust_remote_code: RemoteCodeOpt = False,
) -> None:
    """Answer one question with a model and print the answer (--set decoding.strategy=rain: by RAIN)."""
    from sao.engine import SamplingParams
    from sao.rain.config import DecodingOverrides
    from sao.rain.engine import wrap_engine
    from sao.recipe import apply_overrides, validate

    decoding = validate(DecodingOverrides, apply_overrides({}, set_ or [])).decoding
    plain = _engine(model, _engine_settings(device, dtype, 1, engine_, False), trust_remote_code, progress=False)
    engine = wrap_engine(plain, decoding, progress=False)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    typer.echo(engine.generate([messages], params)[0].samples[0].text)


@app.command()
def generate(
    input: Annotated[Path, typer.Option("--input", "-i", help="JSONL with a 'prompt' or 'messages' per line.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (created, or resumed).")],
    model: ModelOpt = DEFAULT_MODEL,
    n: Annotated[int, typer.Option(min=1, help="Samples per prompt.")] = 2,
    temperature: Annotated[float, typer.Option(min=0, help="0 is greedy.")] = 0.7,
    top_p: Annotated[float, typer.Option(min=0, max=1)] = 0.95,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Base seed; each row derives its own from it and its id.")] = 0,
    system: Annotated[str | None, typer.Option(help="System message for prompts that have none.")] = None,
    batch_size: BatchOpt = 32,
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows written per append (the most a kill can lose).")] = 32,
    force: Annotated[bool, typer.Option(help="Start over if the run directory has a different config.")] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    engine_: EngineOpt = None,
    set_: SetOpt = None,
    ray: RayOpt = False,
    trust_remote_code: RemoteCodeOpt = False,
) -> None:
    """Sample n responses per prompt into a resumable run directory (--set decoding.strategy=rain: by RAIN)."""
    from sao.engine.factory import engine_model_info
    from sao.rain.engine import wrap_engine
    from sao.recipe import apply_overrides
    from sao.stages.generate import load_prompts, run_generate, validate_config

    values = apply_overrides(
        dict(
            model=model,
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            stop=stop or [],
            seed=seed,
            system=system,
        ),
        set_ or [],
    )
    config = validate_config(values)
    settings = _engine_settings(device, dtype, batch_size, engine_, ray)
    prompts = load_prompts(input, system)  # before the model load, so bad input fails fast
    engine = wrap_engine(_engine(model, settings, trust_remote_code), config.decoding)
    store, result = run_generate(
        engine, config, prompts, out, model_info=engine_model_info(model, settings), chunk_size=chunk_size, force=force
    )
    stats = store.manifest.stages[result.stage].stats
    typer.echo(
        f"{result.total} rows in {store.stage_path(result.stage)} "
        f"({result.written} new, {result.skipped} resumed); finish reasons {stats['finish_reasons']}"
    )


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (created, or resumed).")],
    recipe: Annotated[
        Path | None,
        typer.Option(help="YAML recipe: a run recipe's 'synth' section, model and engine, or a synth section file."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Overrides the recipe's model.")] = None,
    num_prompts: Annotated[int | None, typer.Option(help="Personas drawn, hence prompts requested.")] = None,
    personas: Annotated[
        str | None, typer.Option(help="'self', a .jsonl/.txt/.parquet file, or hf:NAME[:CONFIG].")
    ] = None,
    no_personas: Annotated[bool, typer.Option(help="Ablation: prompts with no persona.")] = False,
    seed: Annotated[int | None, typer.Option(help="Overrides the recipe's seed.")] = None,
    set_: SetOpt = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows written per append (the most a kill can lose).")] = 32,
    force: Annotated[bool, typer.Option(help="Start over if the run directory has a different config.")] = False,
    push_to_hub: Annotated[str | None, typer.Option(help="Also upload the pairs to this HF dataset repo.")] = None,
    until: Annotated[
        str | None, typer.Option(help="Stop after this stage (personas, prompts, responses, judgements).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:1, ... (default: the recipe's, auto).")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="auto, float32, bfloat16, float16 (default: the recipe's, auto).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Sequences decoded together (default: the recipe's, 32).")
    ] = None,
    engine_: EngineOpt = None,
    ray: RayOpt = False,
    trust_remote_code: RemoteCodeOpt = False,
) -> None:
    """The synthesis stages of the recipe's method (SAO: personas -> prompts -> K responses ->
    self-judgement -> preference pairs), resumable."""
    from sao import methods
    from sao.recipe import apply_overrides, set_field, validate
    from sao.synth.pipeline import synthesize

    parts = _recipe(recipe, "synth")
    method = methods.get(parts.method)
    values = parts.section
    # SAO's section records its model (each pair carries it); other methods take it from --model alone.
    own_model = "model" in method.section.model_fields
    # SAO's flags, kept for the common case; any method's fields are reachable with --set.
    flags = {"model": (model or parts.model) if own_model else None, "num_prompts": num_prompts, "seed": seed}
    flags |= {"personas.source": personas, "prompts.no_personas": True if no_personas else None}
    for key, value in flags.items():
        if value is not None:
            values = set_field(values, key, value)
    config = validate(method.section, apply_overrides(values, set_ or []))
    settings = _engine_settings(device, dtype, batch_size, engine_, ray, parts.engine)
    spec = config.model if own_model else model or parts.model or DEFAULT_MODEL
    store = synthesize(
        method,
        config,
        spec,
        settings,
        out,
        trust_remote_code=trust_remote_code or parts.trust_remote_code,
        force=force,
        chunk_size=chunk_size,
        until=until,
    )
    md = store.root / "report.md"
    if not store.is_done(method.training_data):
        typer.echo(f"stopped after {until}; rerun without --until to finish. Report: {md}")
        return
    data = store.manifest.stages[method.training_data]
    typer.echo(f"{data.rows} rows in {store.stage_path(method.training_data)}; report: {md}")
    if push_to_hub:
        from sao.stages.pairs import push_to_hub as push

        push(store, push_to_hub)
        typer.echo(f"pushed to the HF dataset {push_to_hub}")


@app.command()
def train(
    pairs: Annotated[Path, typer.Option(help="A sao synth run directory, RUN_DIR/pairs, or a .jsonl/.parquet file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (created, or resumed).")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help=f"Model to train (default: the recipe's model, else {DEFAULT_MODEL}): alias, local "
            "HF directory or hub id.",
        ),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(help="YAML recipe: a run recipe's 'train' section and model, or a train section file."),
    ] = None,
    trainer: Annotated[
        str | None,
        typer.Option(help="simpo, dpo, ipo, robust_dpo or sft (overrides the recipe's train.trainer)."),
    ] = None,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Start over if the output directory has a different config.")] = False,
    trust_remote_code: RemoteCodeOpt = False,
) -> None:
    """Preference-optimise a model on pairs (SimPO by default); saves model, tokenizer and model card.

    A trainer's options: --set dpo.beta=0.05; any other field of its TRL config: --set trl.FIELD=VALUE.
    """
    from sao.recipe import apply_overrides, set_field, validate
    from sao.train.config import TrainConfig
    from sao.train.run import run_train

    parts = _recipe(recipe, "train")  # training runs no engine: a run recipe's engine does not apply
    values = parts.section
    if trainer:
        values = set_field(values, "trainer", trainer)
    config = validate(TrainConfig, apply_overrides(values, set_ or []))
    model = model or parts.model or DEFAULT_MODEL
    trust_remote_code = trust_remote_code or parts.trust_remote_code
    result = run_train(config, model, pairs, out, force=force, trust_remote_code=trust_remote_code)
    if not result.is_main:
        return  # under accelerate launch: one summary, from the main process
    m = result.metrics
    typer.echo(
        f"model in {result.model_dir}; final loss {m.get('final_loss')}, "
        f"reward margin {m.get('final_rewards/margins')}; curves in {out / 'training.png'}"
    )


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="YAML run recipe (see recipes/).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (default: the recipe's out).")] = None,
    set_: SetOpt = None,
    engine_: EngineOpt = None,
    ray: RayOpt = False,
    force: Annotated[bool, typer.Option(help="Start over where the config changed (old files are kept).")] = False,
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows written per append (the most a kill can lose).")] = 32,
) -> None:
    """Iterate synthesise -> train from a recipe; resumable: rerun the same command after a kill."""
    from sao.loop.config import validate_run
    from sao.loop.run import run_loop
    from sao.recipe import apply_overrides, load_yaml, set_field

    values = load_yaml(recipe)
    if ray:
        values = set_field(values, "engine.ray.enabled", True)
    config = validate_run(apply_overrides(values, _overrides(engine_, set_)))
    out_dir = out or (Path(config.out) if config.out else Path("runs") / recipe.stem)
    iterations = run_loop(config, out_dir, force=force, chunk_size=chunk_size)
    last = iterations[-1]
    typer.echo(f"model:  {last.model_out}")
    typer.echo(f"pairs:  {last.synth.stage_path('pairs')}")
    typer.echo(f"report: {last.root / 'report.md'} (all iterations: {out_dir / 'report.md'})")


@app.command("methods")
def methods_() -> None:
    """The self-alignment methods a recipe's `method:` can name, one line each."""
    from sao import methods

    for name in methods.names():
        method = methods.get(name)
        typer.echo(f"{name:<12} {method.summary} [trainer {method.trainer}; {method.doc}]")


def _recipe(recipe: Path | None, name: str):
    """What ``--recipe`` gives the command with section ``name``: `sao.loop.config.CommandRecipe`."""
    from sao.loop.config import CommandRecipe, command_recipe
    from sao.recipe import load_yaml

    return command_recipe(load_yaml(recipe), name) if recipe else CommandRecipe({})


@app.command("eval")
def eval_(
    out: Annotated[Path, typer.Option("--out", "-o", help="Eval directory (created, or resumed).")],
    instructions: Annotated[
        Path | None,
        typer.Option("--instructions", "-i", help="AlpacaEval JSON, MT-Bench question.jsonl or plain JSONL."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Candidate A: model or answer file (repeatable)."),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run", help="A sao run directory: every iteration's model (baseline and judge: its starting model)."
        ),
    ] = None,
    name: Annotated[list[str] | None, typer.Option("--name", help="Candidate display name (repeatable).")] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Baseline B: model or answer file (with --run: the run's starting model).")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            help="A judge model for every comparison, or 'self' (each candidate judges its own comparison, SAO's "
            "setting). Default: the starting model with --run or a run recipe, else self."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N instructions.")] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(
            help="YAML recipe: a run recipe's 'eval' section, engine and model (the default baseline and "
            "judge), or an eval section file."
        ),
    ] = None,
    set_: SetOpt = None,
    harness: Annotated[
        str | None, typer.Option(help="lm-evaluation-harness tasks, e.g. gsm8k,mmlu (needs sao[harness]).")
    ] = None,
    harness_limit: Annotated[int | None, typer.Option(min=1, help="Harness examples per task.")] = None,
    verifiable: Annotated[
        Path | None,
        typer.Option(
            help="Verifiable tasks, JSONL of prompt/answer rows: each model's greedy accuracy (Wilson interval), "
            "no-answer count and mean answer tokens."
        ),
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, help="Token budget of one answer (decoding.max_new_tokens; default 512).")
    ] = None,
    engine_: EngineOpt = None,
    ray: RayOpt = False,
    force: Annotated[bool, typer.Option(help="Start over where the config changed (old files are kept).")] = False,
) -> None:
    """Candidates against a baseline: win rate, LC win rate, position consistency; exports for alpaca_eval.

    With --verifiable FILE: each model's accuracy on tasks with reference answers (the baseline's too).
    """
    from sao.eval.config import EvalConfig
    from sao.eval.run import run_eval, with_run_iterations, with_starting_model
    from sao.loop.config import merge_sections
    from sao.recipe import apply_overrides, set_field, validate

    parts = _recipe(recipe, "eval")
    values = parts.section
    if parts.engine:
        values = set_field(values, "engine", merge_sections(parts.engine, values.get("engine") or {}))
    flags = {"instructions": instructions and str(instructions), "baseline": baseline, "judge.model": judge}
    flags |= {"limit": limit, "candidates": model or None, "names": name or None}
    flags |= {"decoding.max_new_tokens": max_new_tokens, "engine.ray.enabled": True if ray else None}
    for key, value in flags.items():
        if value is not None:
            values = set_field(values, key, value)
    if run_dir:
        values = with_run_iterations(values, run_dir)
    if parts.model:
        values = with_starting_model(values, parts.model)
    values = apply_overrides(values, _overrides(engine_, set_))
    if harness:
        _harness(values, harness, harness_limit, out)
    if verifiable:
        _verifiable(values, verifiable, out, force)
    if (harness or verifiable) and "instructions" not in values:
        return
    config = validate(EvalConfig, values)
    result = run_eval(config, out, force=force)
    for c in result.comparisons:
        typer.echo(
            f"{c.name} vs {c.baseline}: win rate {c.win_rate.value:.1f} ± {c.win_rate.stderr:.1f}, "
            f"LC {c.lc_win_rate.value:.1f} ± {c.lc_win_rate.stderr:.1f}, "
            f"position consistency {c.position_consistency:.1%} ({c.pairs} pairs, judged by {c.judge})"
        )
    typer.echo(f"report: {result.report}")


def _harness(values: dict, tasks: str, limit: int | None, out: Path) -> None:
    """lm-evaluation-harness on every candidate model (answer files have no model to run)."""
    from sao.engine.config import EngineSection
    from sao.eval.harness import run_harness, write_harness_report
    from sao.eval.run import is_answer_file, slug
    from sao.models import pick_device
    from sao.recipe import validate

    models = [spec for spec in values.get("candidates", []) if not is_answer_file(spec)]
    if not models:
        raise ConfigError("candidates: --harness needs a candidate model (--model or --run)")
    engine = validate(EngineSection, values.get("engine", {}))
    for spec in models:
        result = run_harness(
            spec,
            [t.strip() for t in tasks.split(",") if t.strip()],
            limit=limit,
            batch_size=engine.batch_size,
            device=str(pick_device(engine.device)),
            dtype=engine.dtype,
            trust_remote_code=bool(values.get("trust_remote_code", False)),
        )
        path = write_harness_report(result, out / "harness" / slug(spec))
        typer.echo(f"{spec}: harness results in {path} and {path.with_suffix('.md')}")


def _verifiable(values: dict, tasks: Path, out: Path, force: bool) -> None:
    """Accuracy of every model the eval section names on a verifiable task set."""
    from sao.eval.verifiable import verifiable_eval

    for c, a in verifiable_eval(values, tasks, out, force=force):
        typer.echo(
            f"{c.name}: accuracy {a.accuracy:.1%} (95% CI {a.low:.1%} - {a.high:.1%}), {a.correct}/{a.n} correct, "
            f"{a.no_answer} with no answer line, {a.mean_tokens:.1f} answer tokens on average"
        )
    typer.echo(f"verifiable report: {out / 'verifiable.md'}")


@app.command("judge-eval")
def judge_eval(
    pairs: Annotated[Path, typer.Option(help="Labelled pairs JSONL: prompt, response_a, response_b, label.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (created, or resumed).")],
    judge: Annotated[
        str | None,
        typer.Option(
            help="Judge model (default: a run recipe's model, else the embedded default), or 'sar': SAR (the "
            "self-aligned reward) under that model, no judge prompt, or 'rain': RAIN's self-evaluation of each "
            "answer (--set judge.rain_criterion=truthful) (--set judge.model=M for another model)."
        ),
    ] = None,
    mode: Annotated[str | None, typer.Option(help="logprob or generate.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N pairs.")] = None,
    max_answer_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="Cut each answer to this many of the judge's tokens (judge.max_answer_tokens)."),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(
            help="YAML recipe: a run recipe's 'judge_eval' section, engine and model (the judge), or a "
            "judge_eval section file."
        ),
    ] = None,
    set_: SetOpt = None,
    engine_: EngineOpt = None,
    force: Annotated[bool, typer.Option(help="Start over if the output directory has a different config.")] = False,
) -> None:
    """A judge's agreement with labelled pairs, position consistency, and a prefer-the-longer baseline."""
    from sao.eval.config import JudgeEvalConfig
    from sao.eval.judge_eval import judge_name, result_markdown, run_judge_eval
    from sao.judge.config import SIGNALS
    from sao.loop.config import merge_sections
    from sao.recipe import apply_overrides, set_field, validate

    parts = _recipe(recipe, "judge_eval")  # a run recipe's model is the judge under test
    values = parts.section
    if parts.engine:
        values = set_field(values, "engine", merge_sections(parts.engine, values.get("engine") or {}))
    if parts.model and "model" not in (values.get("judge") or {}):
        values = set_field(values, "judge.model", parts.model)
    flags = {"pairs": str(pairs), "judge.model": judge, "judge.mode": mode, "limit": limit}
    flags["judge.max_answer_tokens"] = max_answer_tokens
    if judge in SIGNALS:  # a signal, not a model: SAR or RAIN's evaluator under the model the judge would be
        flags |= {"judge.model": None, "judge.signal": judge}
    for key, value in flags.items():
        if value is not None:
            values = set_field(values, key, value)
    config = validate(JudgeEvalConfig, apply_overrides(values, _overrides(engine_, set_)))
    result = run_judge_eval(config, out, force=force)
    typer.echo(result_markdown(result, judge_name(config.judge)))
    typer.echo(f"\nreport: {out / 'report.md'}")


@app.command()
def stats(run_dir: Annotated[Path, typer.Argument(help="A run directory made by sao synth.")]) -> None:
    """Print per-stage counts, drop reasons, diversity and judge bias; write report.md and lengths.png."""
    from sao.store import RunStore
    from sao.synth.report import stats_markdown, write_report

    store = RunStore.load(run_dir)
    md, png = write_report(store)
    typer.echo(stats_markdown(store))
    typer.echo(f"wrote {md}" + (f" and {png}" if png else ""))


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, not a traceback.

    Usage errors are click's (also exit code 2); a Ctrl-C is click's "Aborted!" (exit 1).
    """
    try:
        app()
    except SaoError as exc:
        print(f"sao: error: {exc}", file=sys.stderr)
        sys.exit(2)
