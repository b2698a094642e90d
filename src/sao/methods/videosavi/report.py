"""The synthesis report of one VideoSAVi iteration: stage counts, questions by type, rubric parse failures,
CLIP swaps, and a plot of the chosen and rejected answers' rubric totals and CLIP similarities."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sao.atomic import write_text_atomic
from sao.methods.videosavi.stages import PAIRS, QUESTIONS
from sao.stage import kept
from sao.store import RunStore
from sao.synth.report import stats_markdown


def videosavi_markdown(store: RunStore) -> str:
    lines = [stats_markdown(store).rstrip(), ""]
    types = Counter(q["type"] for row in store.rows(QUESTIONS) for q in row["questions"])
    if types:
        lines.append("**questions by type**: " + ", ".join(f"{t} {n}" for t, n in sorted(types.items())))
    pairs = kept(store.rows(PAIRS))
    if pairs:
        swapped = sum(p["clip_swapped"] for p in pairs)
        lines.append(f"**pairs**: {len(pairs)}, of which the CLIP check swapped {swapped}")
    return "\n".join(lines) + "\n"


def plot_pairs(store: RunStore, path: Path) -> Path | None:
    """Rubric totals (and CLIP similarities, where measured) of chosen vs rejected answers; None without pairs
    that carry any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = kept(store.rows(PAIRS))
    scored = [p for p in pairs if p["chosen_score"] is not None]
    clipped = [p for p in pairs if p["clip_chosen"] is not None]
    if not scored and not clipped:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if scored:
        left.hist(
            [[p["chosen_score"] for p in scored], [p["rejected_score"] for p in scored]],
            bins=range(0, 42, 2),
            label=["chosen", "rejected"],
            color=["tab:green", "tab:red"],
        )
        left.legend()
    left.set(title=f"Self-evaluation totals (n={len(scored)})", xlabel="rubric total (0-40)", ylabel="pairs")
    if clipped:
        right.scatter(
            [p["clip_rejected"] for p in clipped],
            [p["clip_chosen"] for p in clipped],
            s=12,
            c=["tab:orange" if p["clip_swapped"] else "tab:blue" for p in clipped],
        )
        low = min(min(p["clip_rejected"], p["clip_chosen"]) for p in clipped)
        high = max(max(p["clip_rejected"], p["clip_chosen"]) for p in clipped)
        right.plot([low, high], [low, high], color="grey", linewidth=0.8)
    right.set(title="CLIP similarity to the video (orange: swapped)", xlabel="rejected", ylabel="chosen")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(store: RunStore) -> tuple[Path, Path | None]:
    md = store.root / "report.md"
    png = plot_pairs(store, store.root / "pairs.png")
    text = videosavi_markdown(store)
    if png is not None:
        text += f"\n![pairs]({png.name})\n"
    write_text_atomic(md, text)
    return md, png
