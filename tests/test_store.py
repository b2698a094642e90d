import json

import pytest
from pydantic import BaseModel

from sao.errors import ResumeConflictError, StoreCorruptError
from sao.store import ResumableWriter, RunStore, read_rows


class Row(BaseModel):
    id: str
    schema_version: int = 1
    value: int


def test_writer_skips_ids_already_written(tmp_path):
    path = tmp_path / "s.jsonl"
    with ResumableWriter(path) as w:
        assert w.write([Row(id="a", value=1), Row(id="b", value=2)]) == 2
    with ResumableWriter(path) as w:
        assert w.done_ids == {"a", "b"}
        assert w.write([Row(id="b", value=9), Row(id="c", value=3), Row(id="c", value=4)]) == 1
    assert [(r["id"], r["value"]) for r in read_rows(path)] == [("a", 1), ("b", 2), ("c", 3)]


def test_torn_last_line_is_dropped_on_reopen(tmp_path):
    path = tmp_path / "s.jsonl"
    with ResumableWriter(path) as w:
        w.write([Row(id="a", value=1)])
    with path.open("ab") as f:
        f.write(b'{"id": "b", "schema_ver')  # a crash mid-write
    assert [r["id"] for r in read_rows(path)] == ["a"]
    with ResumableWriter(path) as w:
        assert w.torn_bytes == len(b'{"id": "b", "schema_ver')
        w.write([Row(id="b", value=2)])
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b"]


def test_damaged_middle_line_is_an_error_not_a_silent_drop(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a"}\n{broken\n{"id": "c"}\n')
    with pytest.raises(StoreCorruptError, match=r"s.jsonl:2"):
        ResumableWriter(path)


def test_resume_with_same_config_keeps_manifest(tmp_path):
    store = RunStore.open(tmp_path / "run", {"n": 2}, {"fingerprint": "x"})
    store.stage_started("gen")
    store.stage_done("gen", rows=3, stats={"k": 1})
    again = RunStore.open(tmp_path / "run", {"n": 2}, {"fingerprint": "x"})
    assert again.is_done("gen")
    assert again.manifest.stages["gen"].stats == {"k": 1}
    on_disk = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert on_disk["config"] == {"n": 2}
    assert on_disk["config_hash"].startswith("sha256:")
    assert on_disk["model"]["fingerprint"] == "x"
    assert on_disk["sao_version"]


def test_changed_config_is_refused_with_the_field_named(tmp_path):
    RunStore.open(tmp_path / "run", {"n": 2, "temperature": 0.7})
    with pytest.raises(ResumeConflictError, match=r"temperature: 0\.7 -> 1\.0.*--force"):
        RunStore.open(tmp_path / "run", {"n": 2, "temperature": 1.0})


def test_changed_model_weights_are_refused(tmp_path):
    RunStore.open(tmp_path / "run", {"n": 2}, {"fingerprint": "a"})
    with pytest.raises(ResumeConflictError, match="fingerprint a -> b"):
        RunStore.open(tmp_path / "run", {"n": 2}, {"fingerprint": "b"})


def test_force_moves_the_old_run_aside(tmp_path):
    store = RunStore.open(tmp_path / "run", {"n": 2})
    with store.writer("gen") as w:
        w.write([Row(id="a", value=1)])
    fresh = RunStore.open(tmp_path / "run", {"n": 3}, force=True)
    assert fresh.manifest.config == {"n": 3}
    assert fresh.rows("gen") == []
    kept = list((tmp_path / "run" / "superseded").glob("*/gen.jsonl"))
    assert len(kept) == 1 and read_rows(kept[0])[0]["id"] == "a"


def test_stage_file_loads_with_datasets(tmp_path):
    store = RunStore.open(tmp_path / "run", {})
    with store.writer("gen") as w:
        w.write([Row(id=str(i), value=i) for i in range(5)])
    ds = store.load_dataset("gen")
    assert ds.num_rows == 5
    assert ds["value"] == [0, 1, 2, 3, 4]
