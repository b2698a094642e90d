"""Stage 5: preference pairs in TRL's conversational format (prompt / chosen / rejected message lists)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sao.omit import OmitWhenNone
from sao.stage import StageResult, kept, run_stage
from sao.store import RunStore
from sao.synth.config import SynthConfig

STAGE = "pairs"


class PairRow(OmitWhenNone):
    omit_when_none = ("rain_side",)

    id: str
    schema_version: int = 1
    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]
    persona: str | None
    judge_probability: float | None  # P(chosen better) by the prompted judge; None when SAR chose (judge.signal)
    chosen_tokens: int
    rejected_tokens: int
    generation: dict[str, Any]
    rain_side: Literal["chosen", "rejected"] | None = None  # which side RAIN decoded (responses.rain), if either


def build_pairs(config: SynthConfig, judged: list[dict[str, Any]], store: RunStore) -> list[PairRow]:
    """Join each kept judgement with its prompt, persona and responses."""
    responses = {r["id"]: r for r in store.rows("responses")}
    prompts = {r["id"]: r for r in store.rows("prompts")}
    generation = {
        "model": config.model,
        "seed": config.seed,
        "responses": config.responses.model_dump(),
        "judge": config.judge.model_dump(exclude={"template"}),
    }
    rows = []
    for j in judged:
        response = responses[j["id"]]
        chosen, rejected = response["samples"][j["chosen"]], response["samples"][j["rejected"]]
        rows.append(
            PairRow(
                id=j["id"],
                prompt=[{"role": "user", "content": response["prompt"]}],
                chosen=[{"role": "assistant", "content": chosen["text"]}],
                rejected=[{"role": "assistant", "content": rejected["text"]}],
                persona=prompts[j["id"]]["persona"],
                judge_probability=j.get("p_chosen"),  # SAR's rows have none: their R_SA are in judgements
                chosen_tokens=chosen["num_tokens"],
                rejected_tokens=rejected["num_tokens"],
                generation=generation,
                rain_side=rain_side(chosen, rejected),
            )
        )
    return rows


def rain_side(chosen: dict[str, Any], rejected: dict[str, Any]) -> str | None:
    """Which of a pair's two response samples RAIN decoded (`sao.stages.responses`), if either."""
    if chosen.get("decoding") == "rain":
        return "chosen"
    return "rejected" if rejected.get("decoding") == "rain" else None


def rain_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many kept pairs have RAIN's answer as the chosen and as the rejected side."""
    sides = [r.get("rain_side") for r in rows]
    return {"rain_chosen": sides.count("chosen"), "rain_rejected": sides.count("rejected")}


def pair_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    gap = [r["chosen_tokens"] - r["rejected_tokens"] for r in rows]
    rain = rain_counts(rows) if any("rain" in r["generation"]["responses"] for r in rows) else {}
    return {
        "pairs": len(rows),
        "mean_chosen_tokens": round(sum(r["chosen_tokens"] for r in rows) / len(rows), 1) if rows else None,
        "mean_rejected_tokens": round(sum(r["rejected_tokens"] for r in rows) / len(rows), 1) if rows else None,
        "mean_length_gap_tokens": round(sum(gap) / len(gap), 1) if gap else None,
        "chosen_longer_share": round(sum(g > 0 for g in gap) / len(gap), 4) if gap else None,
        **rain,
    }


def write_parquet(store: RunStore) -> Path:
    """pairs.parquet beside pairs.jsonl, for ``datasets.load_dataset("parquet", ...)``."""
    import datasets

    path = store.root / f"{STAGE}.parquet"
    rows = store.rows(STAGE)
    if rows:
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:  # no pairs: no file, rather than a file with no schema
        path.unlink(missing_ok=True)
    return path


def run_pairs(config: SynthConfig, store: RunStore, *, progress: bool = True) -> StageResult:
    result = run_stage(
        store,
        STAGE,
        kept(store.rows("judgements")),
        key=lambda r: r["id"],
        process=lambda chunk: build_pairs(config, chunk, store),
        chunk_size=1024,
        stats=pair_stats,
        progress=progress,
    )
    write_parquet(store)
    return result


def push_to_hub(store: RunStore, repo_id: str) -> None:
    """Upload the pairs as a HF dataset (needs a network and a token with write access)."""
    import datasets

    from sao.errors import SaoError, first_line

    try:
        datasets.Dataset.from_list(store.rows(STAGE)).push_to_hub(repo_id)
    except Exception as exc:  # hub errors come in many types; the user needs the first line
        raise SaoError(f"--push-to-hub {repo_id}: {first_line(exc)}") from None
