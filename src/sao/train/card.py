"""The model card (README.md) saved with a trained model: base model, recipe, data and final metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sao import __version__
from sao.embedded_models import EMBEDDED_MODELS
from sao.stages.pairs import pair_stats
from sao.train.config import TrainConfig
from sao.train.curves import METRICS


def metrics_table(stats: dict[str, Any]) -> list[str]:
    """First/last step and first/last epoch means of each training metric (`sao.train.run.summarise_history`)."""
    columns = [("first step", "first_"), ("last step", "final_")]
    if any(k.startswith("first_epoch_mean_") for k in stats):
        columns += [("first-epoch mean", "first_epoch_mean_"), ("last-epoch mean", "last_epoch_mean_")]
    lines = ["| metric | " + " | ".join(c for c, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for key in ("loss", *METRICS):
        if "final_" + key in stats:
            lines.append(f"| {key} | " + " | ".join(str(stats.get(p + key, "")) for _, p in columns) + " |")
    return lines


def global_batch(config: TrainConfig, stats: dict[str, Any]) -> int:
    """Pairs per optimiser step: per-device batch x accumulation x processes (accelerate launch)."""
    return config.batch_size * config.gradient_accumulation_steps * stats.get("processes", 1)


def card_text(
    *, base_model: str, config: TrainConfig, pairs_file: Path, rows: list[dict[str, Any]], stats: dict[str, Any]
) -> str:
    embedded = EMBEDDED_MODELS.get(base_model)
    front = {
        # The hub's base_model field wants a hub id; an embedded alias names its original.
        "base_model": embedded.hub_id if embedded else base_model,
        "library_name": "transformers",
        "tags": ["sao", "self-alignment", "trl", config.trainer],
    }
    is_pairs = all(k in rows[0] for k in ("chosen_tokens", "rejected_tokens"))
    data = pair_stats(rows) if is_pairs else {"rows": len(rows)}
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {base_model} + sao {config.trainer}",
        "",
        f"Trained with sao {__version__} ({config.trainer}, TRL) on self-generated preference data: `{pairs_file}`.",
        "",
        "## Data",
        "",
        *(f"- {k.replace('_', ' ')}: {v}" for k, v in data.items()),
        f"- examples trained on: {stats.get('examples')}; dropped: {stats.get('dropped') or 'none'}; "
        f"responses cut to max_length: {stats.get('truncated')}",
        "",
        "## Final metrics",
        "",
        *metrics_table(stats),
        "",
        f"Steps: {stats.get('steps')} (global batch {global_batch(config, stats)} pairs over "
        f"{stats.get('processes', 1)} process(es)); training time {stats.get('train_seconds')} s; "
        f"{stats.get('tokens_per_second')} tokens/s; peak RSS {stats.get('peak_rss_mb')} MiB.",
        "",
        "![training curves](training.png)",
        "",
        "## Recipe (train section)",
        "",
        "```yaml",
        yaml.safe_dump(config.effective(), sort_keys=False).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(model_dir: Path, **kwargs: Any) -> Path:
    path = model_dir / "README.md"
    path.write_text(card_text(**kwargs))
    return path
