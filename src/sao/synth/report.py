"""``sao stats``: per-stage counts, drop reasons and judge bias, as markdown and a PNG of lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sao.judge.config import SAR, SELF
from sao.judge.sar import sar_label
from sao.store import RunStore

_HEADLINES = {
    "prompts": ("parse_failure_rate", "repetition_rate", "distinct_1", "distinct_2"),
    "responses": ("mean_tokens", "truncated_samples"),
    "judgements": (
        "judgements",
        "parse_failure_rate",
        "position_consistency",
        "first_position_win_share",
        "mean_p_chosen",
        "scored",  # the SAR judge's (judge.signal: sar)
        "mean_sar_chosen",
        "mean_sar_rejected",
    ),
    "pairs": ("mean_chosen_tokens", "mean_rejected_tokens", "mean_length_gap_tokens", "chosen_longer_share"),
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "none"
    return "n/a" if value is None else str(value)


def judge_line(store: RunStore) -> str | None:
    """Which signal chose the pairs, and under which model: the prompted judge or SAR (issue 18); None for a
    method whose settings name no judge."""
    judge = store.manifest.config.get("judge")
    if not isinstance(judge, dict):
        return None
    model = judge.get("model", SELF)
    who = f"`{store.manifest.model.get('spec', '?')}` (self)" if model == SELF else f"`{model}`"
    if judge.get("signal") == SAR:
        return f"**judge**: {sar_label(who)}, which chose the pairs: each answer scored alone, no judge prompt."
    return f"**judge**: {who}, asked with the judge prompt, which chose the pairs."


def stats_markdown(store: RunStore) -> str:
    """A markdown summary of every stage in the manifest."""
    stages = store.manifest.stages
    lines = [
        f"# Synthesis report: {store.root}",
        "",
        f"Model: `{store.manifest.model.get('spec', '?')}`, config {store.manifest.config_hash}.",
        "",
    ]
    if (judged_by := judge_line(store)) is not None:
        lines += [judged_by, ""]
    lines += [
        "| stage | status | rows in | kept | dropped (by reason) | seconds |",
        "|---|---|---:|---:|---|---:|",
    ]
    for name, s in stages.items():  # in the order they first ran: the method's order
        rows_in = s.stats.get("rows_in", s.rows)
        kept = s.stats.get("kept", s.stats.get("pairs", s.rows))
        seconds = _fmt(round(s.seconds, 1) if s.attempts else s.stats.get("seconds"))  # stats: older manifests
        if s.attempts > 1:
            seconds += f" ({s.attempts} attempts)"
        cells = [name, s.status, rows_in, kept, _fmt(s.stats.get("dropped", {})), seconds]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    for name, keys in _HEADLINES.items():
        # Another method may have a stage of the same name without these statistics.
        present = [k for k in keys if name in stages and k in stages[name].stats]
        if present:
            lines += [
                "",
                f"**{name}**: " + "; ".join(f"{k.replace('_', ' ')} {_fmt(stages[name].stats[k])}" for k in present),
            ]
    return "\n".join(lines) + "\n"


def plot_lengths(store: RunStore, path: Path) -> Path | None:
    """Histograms of chosen vs rejected response lengths and of prompt lengths; None if no pairs yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = store.rows("pairs")
    prompts = [r["prompt"] for r in store.rows("prompts") if r["prompt"]]
    if not pairs and not prompts:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if pairs:
        chosen = [p["chosen_tokens"] for p in pairs]
        rejected = [p["rejected_tokens"] for p in pairs]
        bins = range(0, max(chosen + rejected) + 16, 16)
        left.hist([chosen, rejected], bins=bins, label=["chosen", "rejected"], color=["tab:green", "tab:red"])
        left.legend()
    left.set(title=f"Response length in pairs (n={len(pairs)})", xlabel="tokens", ylabel="pairs")
    right.hist([len(p.split()) for p in prompts], bins=20, color="tab:blue")
    right.set(title=f"Prompt length (n={len(prompts)})", xlabel="words", ylabel="prompts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(store: RunStore) -> tuple[Path, Path | None]:
    """Write ``report.md`` and ``lengths.png`` into the run directory."""
    md = store.root / "report.md"
    png = plot_lengths(store, store.root / "lengths.png")
    text = stats_markdown(store)
    if png is not None:
        text += f"\n![lengths]({png.name})\n"
    md.write_text(text)
    return md, png
