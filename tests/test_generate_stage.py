import json

import pytest

from sao.errors import ConfigError, InputError, ResumeConflictError
from sao.stages.generate import GenerateConfig, load_prompts, run_generate, validate_config


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_ids_are_content_hashes_and_repeats_are_kept(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "a"}, {"id": 7, "prompt": "c"}])
    rows = load_prompts(f)
    assert len(rows) == 4
    assert rows[2].id == rows[0].id + "-2"
    assert rows[3].id == "7"
    assert [r.id for r in load_prompts(f)] == [r.id for r in rows]  # stable across reads


def test_system_message_and_messages_input(tmp_path):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}]
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"messages": msgs}])
    rows = load_prompts(f, system="sys")
    assert rows[0].messages[0] == {"role": "system", "content": "sys"}
    assert rows[1].messages == msgs  # an existing system message is left alone


@pytest.mark.parametrize(
    "lines, match",
    [
        (['{"prompt": "a"}', "{not json"], r"p.jsonl:2: invalid JSON"),
        (['{"prompt": "a"}', '{"text": "b"}'], r"p.jsonl:2: needs a non-empty 'prompt'"),
        (['{"id": "x", "prompt": "a"}', '{"id": "x", "prompt": "b"}'], r"p.jsonl:2: id 'x' already used on line 1"),
        (['{"messages": [{"role": "user"}]}'], r"p.jsonl:1: message 0 needs a string 'content'"),
        (["[1, 2]"], r"p.jsonl:1: expected a JSON object"),
        ([], r"p.jsonl: no prompts"),
    ],
)
def test_bad_prompt_files_name_file_and_line(tmp_path, lines, match):
    f = write_jsonl(tmp_path / "p.jsonl", lines)
    with pytest.raises(InputError, match=match):
        load_prompts(f)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="^top_p:"):
        validate_config({"model": "m", "top_p": 3})
    with pytest.raises(ConfigError, match="^temprature:"):
        validate_config({"model": "m", "temprature": 1})


def test_run_generate_resumes_without_loss_or_duplicates(tmp_path, tiny_engine):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"question {i}"} for i in range(6)])
    config = GenerateConfig(model="tiny", n=2, max_new_tokens=4)
    store, first = run_generate(tiny_engine, config, load_prompts(f), tmp_path / "run", chunk_size=2, progress=False)
    assert (first.total, first.written, first.skipped) == (6, 6, 0)
    # Simulate a run killed after two chunks: keep 4 rows and a torn fifth.
    lines = store.stage_path("generations").read_text().splitlines(keepends=True)
    store.stage_path("generations").write_text("".join(lines[:4]) + lines[4][:10])
    _, second = run_generate(tiny_engine, config, load_prompts(f), tmp_path / "run", chunk_size=2, progress=False)
    assert (second.total, second.written, second.skipped) == (6, 2, 4)
    rows = store.rows("generations")
    assert sorted(r["id"] for r in rows) == sorted(p.id for p in load_prompts(f))
    assert all(len(r["samples"]) == 2 and r["schema_version"] == 1 for r in rows)
    stats = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["generations"]
    assert stats["status"] == "done" and stats["rows"] == 6 and stats["stats"]["samples"] == 12


def test_resume_with_changed_prompts_under_the_same_ids_is_refused(tmp_path, tiny_engine):
    """Issue 14: explicit ids (or AlpacaEval's positions) that now name other prompts must not keep old answers."""
    config = GenerateConfig(model="tiny", n=1, max_new_tokens=2)
    first = write_jsonl(tmp_path / "a.jsonl", [{"id": 0, "prompt": "question 0"}, {"id": 1, "prompt": "question 1"}])
    run_generate(tiny_engine, config, load_prompts(first), tmp_path / "run", progress=False)
    other = write_jsonl(tmp_path / "b.jsonl", [{"id": 0, "prompt": "question 0"}, {"id": 1, "prompt": "other"}])
    with pytest.raises(ResumeConflictError, match=r"generations\.jsonl: the row for id '1' was made from a different"):
        run_generate(tiny_engine, config, load_prompts(other), tmp_path / "run", progress=False)
    # A system message goes into the messages, not the config: it changes the input too.
    with pytest.raises(ResumeConflictError, match=r"generations\.jsonl: the row for id '0'"):
        run_generate(tiny_engine, config, load_prompts(first, system="be brief"), tmp_path / "run", progress=False)
    # --force answers the new prompts (the old answers move to superseded/).
    store, result = run_generate(tiny_engine, config, load_prompts(other), tmp_path / "run", force=True, progress=False)
    assert (result.written, result.skipped) == (2, 0)
    assert {r["id"]: r["messages"][-1]["content"] for r in store.rows("generations")} == {
        "0": "question 0",
        "1": "other",
    }
