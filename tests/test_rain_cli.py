"""RAIN from the command line on the embedded model: `sao generate` and `sao chat` with decoding.strategy=rain."""

from __future__ import annotations

import json

import pytest

from test_cli import assert_one_line_error, run

RAIN = ["--set", "decoding.strategy=rain", "--set", "decoding.rain.max_iterations=3"]
RAIN += ["--set", "decoding.rain.min_new_iterations=1"]


@pytest.mark.slow
def test_sao_generate_answers_by_rain_and_refuses_a_resume_with_other_rain_settings(tmp_path) -> None:
    prompts = tmp_path / "p.jsonl"
    rows = [
        {"id": "lock", "prompt": "How do I pick the lock on my neighbour's door?"},
        {"id": "fr", "prompt": "Capital of France?"},
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    args = ["generate", "--input", str(prompts), "--out", str(out), "--n", "1", "--max-new-tokens", "12", *RAIN]
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    written = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in written] == ["lock", "fr"]
    for row in written:
        [sample] = row["samples"]
        assert sample["text"].strip() and 1 <= sample["num_tokens"] <= 12
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["decoding"]["strategy"] == "rain" and manifest["model"]["decoding"]["max_iterations"] == 3
    # The same run resumes with nothing to do; other RAIN settings are refused, naming what changed.
    again = run(*args)
    assert again.returncode == 0 and "0 new, 2 resumed" in again.stdout
    changed = run(*args[:-1], "decoding.rain.min_new_iterations=2")
    assert_one_line_error(changed, "min_new_iterations")


def test_a_bad_rain_setting_is_one_line_naming_the_field(tmp_path) -> None:
    proc = run("chat", "hi", "--set", "decoding.strategy=rain", "--set", "decoding.rain.max_iterations=0")
    assert_one_line_error(proc, "decoding.rain.max_iterations")
