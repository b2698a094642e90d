"""Build this folder's files from the shared HH-RLHF harmless-base test rows (see README.md beside this file).

- ``red_team_prompts.jsonl``: the first human turn of each row, for RAIN against vanilla decoding.
- ``harmless_pairs.jsonl``: each row's two final assistant replies as a labelled pair for ``sao judge-eval``.
  The earlier turns become the prompt, written as a transcript that continues the judge's own "User: "
  line ("...\\nAssistant: ...\\nUser: ..."); the chosen (more harmless) reply is response_a on even rows and
  response_b on odd ones, so a judge that always prefers one slot scores 50%.

Usage: python benchmarks/data/hh_rlhf/build.py [path/to/harmless_base_test_400.jsonl]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
SOURCE = HERE.parents[3] / "shared" / "data" / "hh_rlhf" / "harmless_base_test_400.jsonl"
TURN = re.compile(r"\n\n(Human|Assistant): ")


def turns(transcript: str) -> list[tuple[str, str]]:
    """(speaker, text) of each turn of an HH transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...")."""
    parts = TURN.split(transcript)[1:]
    return [(parts[i], parts[i + 1].strip()) for i in range(0, len(parts), 2)]


def pair(row: dict, position: int) -> dict:
    chosen, rejected = turns(row["chosen"]), turns(row["rejected"])
    if chosen[:-1] != rejected[:-1] or chosen[-1][0] != "Assistant" or rejected[-1][0] != "Assistant":
        raise ValueError(f"row {row['index']}: the two transcripts differ before their last assistant turn")
    names = {"Human": "User", "Assistant": "Assistant"}
    earlier = [text if i == 0 else f"{names[who]}: {text}" for i, (who, text) in enumerate(chosen[:-1])]
    a, b, label = (chosen[-1][1], rejected[-1][1], "a") if position % 2 == 0 else (rejected[-1][1], chosen[-1][1], "b")
    return {"id": f"hh-{row['index']}", "prompt": "\n".join(earlier), "response_a": a, "response_b": b, "label": label}


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    prompts = [{"id": f"hh-{r['index']}", "prompt": turns(r["chosen"])[0][1]} for r in rows]
    pairs = [pair(r, i) for i, r in enumerate(rows)]
    for name, records in (("red_team_prompts.jsonl", prompts), ("harmless_pairs.jsonl", pairs)):
        (HERE / name).write_text("".join(json.dumps(r) + "\n" for r in records))
        print(f"wrote {len(records)} rows to {HERE / name}")


if __name__ == "__main__":
    main()
