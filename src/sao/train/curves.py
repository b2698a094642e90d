"""Training curves as one PNG: loss, then the trainer's own panels (preference margins and log-probs, or
GRPO's rewards and completion lengths), each drawn only when its metrics were logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Logged by CPOTrainer and DPOTrainer alike; the summary, the card and the curves report them.
PREFERENCE_METRICS = ("rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")
# Logged by GRPOTrainer: the weighted total reward, each of sao's reward components, and the rollouts' length.
GRPO_METRICS = ("reward", "rewards/verifiable/mean", "rewards/sar/mean", "completions/mean_length", "kl")
METRICS = PREFERENCE_METRICS + GRPO_METRICS

PANELS = (
    ("loss", ("loss",)),
    ("reward margin / accuracy", ("rewards/margins", "rewards/accuracies")),
    ("log-prob (per token for SimPO)", ("logps/chosen", "logps/rejected")),
    ("rewards (mean per rollout)", ("reward", "rewards/verifiable/mean", "rewards/sar/mean")),
    ("completion tokens (mean)", ("completions/mean_length",)),
)


def plot_curves(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Plot the logged training metrics against the step; None when nothing was logged."""
    steps = [h for h in history if "loss" in h]
    panels = [(title, [k for k in keys if any(k in h for h in steps)]) for title, keys in PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    if not steps or not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            points = [(h["step"], h[key]) for h in steps if key in h]
            ax.plot(*zip(*points), marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("optimiser step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
