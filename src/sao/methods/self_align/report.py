"""The synthesis report of one SELF-ALIGN iteration: each stage's counts and drops, the engraving's held-out
log-probs, and a sample of what the model wrote at each step (``report.md``, ``funnel.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sao.atomic import write_text_atomic
from sao.stage import kept
from sao.store import RunStore
from sao.synth.report import stats_markdown

# The stages whose rows carry drop reasons, in order, for the funnel.
FUNNEL = ("questions", "tasks", "prompts", "answers", "verbose")


def _quote(text: str | None, limit: int = 600) -> str:
    text = (text or "").strip()
    text = text if len(text) <= limit else text[:limit].rstrip() + " …"
    return "\n".join("> " + line for line in text.splitlines()) or "> (empty)"


def samples_markdown(store: RunStore, count: int = 2) -> str:
    """The first few kept rows of the answer and verbose stages, thoughts included (they are for reading)."""
    stages = store.manifest.stages
    parts = []
    if "answers" in stages:
        for row in kept(store.rows("answers"))[:count]:
            parts += [f"**query** ({row['id']})", _quote(row["query"]), "**internal thoughts**",
                      _quote(row["thoughts"]), "**principle-driven answer**", _quote(row["answer"]), ""]  # fmt: skip
    if "verbose" in stages:
        for row in kept(store.rows("verbose"))[:count]:
            parts += [f"**verbose answer** to {row['id']}", _quote(row["answer"]), ""]
    return "\n".join(parts)


def engrave_markdown(stats: dict[str, Any]) -> str:
    before, after = stats.get("held_out_logprob_before") or {}, stats.get("held_out_logprob_after") or {}
    if not before:
        return "**engraving**: no held-out answers, so no log-prob check\n"
    return (
        f"**engraving**: log p(answer | short prompt) on {stats['held_out']} held-out answers: "
        f"{before['total']} before, {after['total']} after (per token {before['per_token']} -> {after['per_token']})\n"
    )


def plot_funnel(store: RunStore, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in FUNNEL if s in store.manifest.stages and store.manifest.stages[s].stats]
    if not stages:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(stages) + 1.2))
    for y, stage in enumerate(stages):
        stats = store.manifest.stages[stage].stats
        ax.barh(y, stats.get("kept", 0), color="tab:green")
        left = stats.get("kept", 0)
        for reason, n in sorted(stats.get("dropped", {}).items()):
            ax.barh(y, n, left=left, color="tab:red", alpha=0.35, edgecolor="white")
            ax.text(left + n / 2, y, reason, ha="center", va="center", fontsize=7)
            left += n
    ax.set_yticks(range(len(stages)), stages)
    ax.invert_yaxis()
    ax.set_xlabel("rows (green: kept; red: dropped, by reason)")
    ax.set_title("SELF-ALIGN: what each stage kept")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(store: RunStore) -> tuple[Path, Path | None]:
    stages = store.manifest.stages
    lines = [stats_markdown(store).rstrip(), ""]
    if "topics" in stages:
        s = stages["topics"].stats
        lines.append(
            f"**topics**: {s.get('balanced_per_type')} per type after balancing, over "
            f"{s.get('types', 0) - s.get('types_without_topics', 0)} of {s.get('types')} types (the others had none)"
        )
    if "engrave" in stages and stages["engrave"].stats:
        lines.append(engrave_markdown(stages["engrave"].stats))
    funnel = plot_funnel(store, store.root / "funnel.png")
    if funnel:
        lines += ["", f"![what each stage kept]({funnel.name})", ""]
    lines.append(samples_markdown(store))
    path = store.root / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path, funnel
