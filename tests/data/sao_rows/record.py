"""Record quickstart.json: `python tests/data/sao_rows/record.py` in a checkout of the code to pin.

It runs what tests/test_sao_rows.py runs (the same overrides, tiny model and scripted engine)
and writes the rows that test compares against.
"""

import json
import sys
import tempfile
from pathlib import Path

import pytest
from transformers import AutoTokenizer

TESTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TESTS))

from conftest import save_with_tokenizer, tiny_llama  # noqa: E402
from sao.models import resolve_model_path  # noqa: E402
from scripted_engine import ScriptedEngine  # noqa: E402
from test_sao_rows import RECORDED, run_quickstart, stage_rows  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m"))
    model = save_with_tokenizer(tiny_llama(tokenizer, tie_word_embeddings=True), tokenizer, Path(tmp) / "tiny")
    with pytest.MonkeyPatch.context() as patch:
        run_quickstart(Path(tmp) / "run", model, ScriptedEngine(), patch)
    rows = stage_rows(Path(tmp) / "run", model)
RECORDED.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
print(f"{RECORDED}: {sum(map(len, rows.values()))} rows in {len(rows)} files")
