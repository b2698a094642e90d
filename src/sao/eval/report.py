"""The eval report: summary.json, report.md, and the plots a reader looks at first."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sao import __version__
from sao.eval.formats import Answers
from sao.eval.summary import Comparison

LC_SOURCE = (
    "Dubois et al. 2024, *Length-Controlled AlpacaEval*, arXiv:2404.04475: "
    "P(A wins) = sigmoid(w0 + theta * tanh(dlen / std(dlen))), reported with theta = 0"
)


def _estimate(e) -> str:
    return f"{e.value:.1f} ± {e.stderr:.1f}"


def comparisons_markdown(comparisons: list[Comparison]) -> str:
    lines = [
        "| candidate | baseline | judge | pairs | win rate % | LC win rate % | W / T / L | position consistency | "
        "first-slot wins | 'longer wins' rate % | mean chars A / B | A truncated |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    for c in comparisons:
        dropped = sum(c.dropped.values())
        pairs = f"{c.pairs}" + (f" (+{dropped} dropped)" if dropped else "")
        lines.append(
            f"| {c.name} | {c.baseline} | {c.judge or '-'} | {pairs} | {_estimate(c.win_rate)} | "
            f"{_estimate(c.lc_win_rate)}{' (d)' if c.lc_uses_difficulty else ''} | "
            f"{c.wins} / {c.ties} / {c.losses} | {c.position_consistency:.1%} | {c.first_slot_win_share:.1%} | "
            f"{c.longer_win_rate.value:.1f} | {c.mean_len_a:.0f} / {c.mean_len_b:.0f} | "
            f"{'-' if c.truncated_a is None else c.truncated_a} |"
        )
    return "\n".join(lines)


def judges_markdown(comparisons: list[Comparison]) -> str:
    """Who judged what, and whether the rows' win rates can be compared with each other."""
    judges = {c.judge for c in comparisons}
    if any(c.judge and c.judge.endswith("(self)") for c in comparisons):
        text = (
            "Judge: self. Each candidate judged its own comparison (SAO's setting), so each row was scored by a "
            "different judge, with that judge's preference for its own answers built in: the rows' win rates do "
            "not compare with each other. A fixed judge (`--judge MODEL`) scores every row alike."
        )
    elif len(judges) == 1:
        text = f"Judge: `{judges.pop()}` scored every comparison, so the rows' win rates compare."
    else:
        text = "Judges: " + ", ".join(f"{c.name} by `{c.judge}`" for c in comparisons) + "."
    if any(c.lc_uses_difficulty for c in comparisons):
        text += " (d): the LC fit has an instruction-difficulty term (the instruction file's instruction_difficulty)."
    return text


def plot_win_rates(comparisons: list[Comparison], path: Path) -> Path:
    """Win rate and LC win rate per candidate (per iteration, for `--run`), with one-standard-error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(len(comparisons)))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(x) + 2), 3.6))
    for offset, label, key in ((-0.1, "win rate", "win_rate"), (0.1, "LC win rate", "lc_win_rate")):
        values = [getattr(c, key) for c in comparisons]
        ax.errorbar(
            [i + offset for i in x],
            [v.value for v in values],
            yerr=[v.stderr for v in values],
            fmt="o-",
            capsize=4,
            label=label,
        )
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [c.name for c in comparisons])
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"% vs {comparisons[0].baseline}")
    ax.set_title("Win rate against the baseline (± 1 s.e.)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lengths(sides: list[Answers], path: Path) -> Path:
    """Answer-length distributions (characters), the first thing to check when a judge may reward length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = {side.name: [len(o.text) for o in side.outputs.values()] for side in sides}
    top = max(max(v) for v in lengths.values()) or 1
    bins = [top * i / 30 for i in range(31)]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, values in lengths.items():
        ax.hist(values, bins=bins, histtype="step", lw=1.6, label=f"{name} (median {sorted(values)[len(values) // 2]})")
    ax.set_xlabel("answer length (characters)")
    ax.set_ylabel("answers")
    ax.set_title("Answer lengths")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_eval_report(
    out_dir: Path, comparisons: list[Comparison], baseline: Answers, candidates: list[Answers]
) -> Path:
    """summary.json, report.md and the plots; returns the report's path."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    summary = {"sao_version": __version__, "created_at": created, "comparisons": [c.to_dict() for c in comparisons]}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plots = [plot_lengths([*candidates, baseline], out_dir / "lengths.png")]
    if len(comparisons) > 1:
        plots.insert(0, plot_win_rates(comparisons, out_dir / "win_rates.png"))
    sources = "\n".join(
        f"- {side.name}: {'answers read from' if side.is_file else 'generated by'} `{side.spec}`"
        for side in [*candidates, baseline]
    )
    text = "\n\n".join(
        [
            f"# sao eval ({created})",
            comparisons_markdown(comparisons),
            judges_markdown(comparisons),
            "Win rate: mean judge preference for the candidate, each pair judged in both orders and averaged "
            "(a tie counts half), ± standard error. LC win rate: length-controlled, after " + LC_SOURCE + "; "
            "± bootstrap standard error. Position consistency: share of pairs whose winner is the same in both "
            "orders. 'Longer wins' rate: the win rate a judge that always prefers the longer answer would give; "
            "a win rate close to it may be length, not quality.",
            "## Answers\n\n" + sources,
            "\n".join(f"![{p.stem}]({p.name})" for p in plots),
        ]
    )
    path = out_dir / "report.md"
    path.write_text(text + "\n")
    return path
