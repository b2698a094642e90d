"""After the last iteration: held-out accuracy and answer length of the starting model and of every iterate.

Each model answers the held-out tasks greedily and is scored on correctness alone (R_VR: SAR is a training
signal, never part of the score) by `sao.eval.verifiable.run_verifiable`, whose answers are a resumable
stage per model under ``sar/``. The table goes into the run report; ``sar/verifiable.json``, ``.md`` and
``.png`` hold the figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sao.eval.verifiable import Candidate, run_verifiable, verifiable_markdown
from sao.methods.sar.stages import split_tasks


def compare_accuracy(config: Any, out_dir: Path, iterations: list[Any], *, progress: bool = True) -> str | None:
    """The method's `finish`: markdown for the run report (None when no iteration ran)."""
    if not iterations:
        return None
    section = config.synth
    held, _ = split_tasks(section, 1)  # the same held-out tasks in every iteration
    candidates = [Candidate("start", iterations[0].model_in)] + [
        Candidate(f"iter-{it.index}", str(it.model_out)) for it in iterations
    ]
    results = run_verifiable(
        candidates,
        held,
        Path(out_dir) / "sar",
        engine=config.engine,
        max_new_tokens=section.eval.max_new_tokens,
        system=section.system,
        trust_remote_code=config.trust_remote_code,
        progress=progress,
    )
    table = verifiable_markdown(results, max_new_tokens=section.eval.max_new_tokens)
    return f"## Held-out accuracy ({len(held)} tasks)\n\n{table}\n\n![held-out accuracy](sar/verifiable.png)\n"
