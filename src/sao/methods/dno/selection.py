"""DNO-Prct's last step: the best of π_1 ... π_{T+1} on the held-out validation split.

Every iterate answers the validation prompts and one fixed judge compares each trained iterate
with π_1, the model the run started from (`sao eval`'s machinery: both orders, debiased). The
fixed judge is ``synth.judge.model`` when that names a model, else the starting model: with
``self`` each iterate would judge its own answers, and win rates from different judges do not
compare. The choice and the win rates go to ``selection.json``, ``selection.png`` and the run report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sao.atomic import write_text_atomic
from sao.judge.config import SELF
from sao.methods.dno.stages import split_rows


def _validation_file(config: Any, out_dir: Path) -> Path | None:
    validation, _ = split_rows(config.synth, 1)
    if not validation:
        return None
    path = out_dir / "selection" / "validation.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": row.id, "messages": row.messages}) for row in validation]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def choose(win_rates: dict[str, float]) -> str:
    """The iterate with the highest win rate against π_1 (π_1 itself counts 50%); ties go to the earliest."""
    return max(win_rates, key=lambda name: (win_rates[name], -list(win_rates).index(name)))


def plot(win_rates: dict[str, float], best: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(win_rates)
    ax.plot(names, [win_rates[n] for n in names], marker="o")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.annotate("best", (names.index(best), win_rates[best]), textcoords="offset points", xytext=(0, 8), ha="center")
    ax.set(title="Validation win rate against the starting model", xlabel="iterate", ylabel="win rate (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def select_iterate(config: Any, out_dir: Path, iterations: list[Any], *, progress: bool = True) -> str | None:
    """Judge every iterate on the validation split, record the best; returns the run report's lines."""
    from sao.eval.config import EvalConfig
    from sao.eval.run import run_eval, with_run_iterations
    from sao.recipe import validate

    file = _validation_file(config, out_dir)
    if file is None:
        return None
    judge = config.synth.judge
    values = with_run_iterations(
        {
            "instructions": str(file),
            "decoding": {"temperature": 0.0, "max_new_tokens": config.synth.samples.max_new_tokens},
            "engine": config.engine.model_dump(),
            "trust_remote_code": config.trust_remote_code,
            "judge": {} if judge.model == SELF else {"model": judge.model, "engine": judge.engine},
        },
        out_dir,
    )
    result = run_eval(validate(EvalConfig, values), out_dir / "selection", progress=progress)
    win_rates = {"start": 50.0} | {c.name: round(c.win_rate.value, 2) for c in result.comparisons}
    best = choose(win_rates)
    models = {"start": config.model} | {f"iter-{it.index}": str(it.model_out) for it in iterations}
    record = {"judge": result.comparisons[0].judge, "win_rates": win_rates, "best": best, "model": models[best]}
    write_text_atomic(out_dir / "selection.json", json.dumps(record, indent=1) + "\n")
    png = plot(win_rates, best, out_dir / "selection.png")
    rates = ", ".join(f"{name} {rate}%" for name, rate in win_rates.items())
    return (
        f"\n**Best iterate on the validation split**: {best} (`{models[best]}`). Win rates against the starting "
        f"model, judged by {record['judge']}: {rates}. [details](selection/report.md)\n\n![validation]({png.name})\n"
    )
