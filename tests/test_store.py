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


# Issue 14: a row's identity includes its input; the engine, the stats and the manifest survive a resume.


def _run(store, items, *, fail_after=None):
    """run_stage over (id, text) items; a row holds its text upper-cased. ``fail_after`` chunks: a kill."""
    from sao.stage import run_stage

    calls = []

    def process(chunk):
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt  # stands in for a kill between chunks
        calls.append(chunk)
        return [Text(id=i, text=t.upper()) for i, t in chunk]

    return run_stage(store, "s", items, key=lambda item: item[0], process=process, chunk_size=2, progress=False)


class Text(BaseModel):
    id: str
    schema_version: int = 1
    text: str


def test_resume_with_a_changed_input_for_an_id_is_refused(tmp_path):
    store = RunStore.open(tmp_path / "run", {"n": 2})
    _run(store, [("a", "x"), ("b", "y")])
    again = RunStore.open(tmp_path / "run", {"n": 2})
    # Same config, same ids, but b's input is another text: keeping the old row would be a silent stale answer.
    with pytest.raises(ResumeConflictError, match=r"s\.jsonl: the row for id 'b' was made from a different input"):
        _run(again, [("a", "x"), ("b", "z"), ("c", "w")])
    assert all(r["input_digest"].startswith("sha256:") for r in again.rows("s"))
    assert [r["text"] for r in again.rows("s")] == ["X", "Y"]  # nothing appended
    # The same inputs, plus a new one, resume as before.
    result = _run(again, [("a", "x"), ("b", "y"), ("c", "w")])
    assert (result.written, result.skipped) == (1, 2)


def test_force_redoes_a_stage_whose_input_changed(tmp_path):
    store = RunStore.open(tmp_path / "run", {"n": 2})
    _run(store, [("a", "x"), ("b", "y")])
    forced = RunStore.open(tmp_path / "run", {"n": 2}, force=True)
    result = _run(forced, [("a", "x"), ("b", "z")])
    assert (result.written, result.skipped) == (2, 0)
    assert [r["text"] for r in forced.rows("s")] == ["X", "Z"]
    old = list((tmp_path / "run" / "superseded").glob("*/s.jsonl"))
    assert len(old) == 1 and [r["text"] for r in read_rows(old[0])] == ["X", "Y"]


def test_rows_without_an_input_digest_are_refused_with_a_clear_message(tmp_path):
    store = RunStore.open(tmp_path / "run", {"n": 2})
    with store.writer("s") as w:  # as sao wrote rows before input digests
        w.write([Text(id="a", text="X")])
    with pytest.raises(ResumeConflictError, match=r"s\.jsonl: the row for id 'a' was written by an older sao"):
        _run(store, [("a", "x")])


def test_changed_engine_is_refused_like_changed_weights(tmp_path):
    model = {"fingerprint": "x", "backend": "transformers", "dtype": "float32"}
    RunStore.open(tmp_path / "run", {"n": 2}, model)
    with pytest.raises(
        ResumeConflictError, match=r"engine \(backend 'transformers' -> 'llamacpp'.*weights None -> 'q8_0'"
    ):
        RunStore.open(tmp_path / "run", {"n": 2}, {"fingerprint": "x", "backend": "llamacpp", "weights": "q8_0"})
    with pytest.raises(ResumeConflictError, match=r"engine \(dtype 'float32' -> 'bfloat16'\)"):
        RunStore.open(tmp_path / "run", {"n": 2}, model | {"dtype": "bfloat16"})
    RunStore.open(tmp_path / "run", {"n": 2}, dict(model))  # the same engine resumes


def test_stage_time_and_attempts_survive_a_resume(tmp_path, monkeypatch):
    # A clock that moves 1 s per reading: every chunk then takes exactly 1 s, whatever the machine.
    ticks = iter(range(10_000))
    monkeypatch.setattr("sao.stage.time.perf_counter", lambda: float(next(ticks)))
    store = RunStore.open(tmp_path / "run", {"n": 2})
    store.stage_started("s")
    store.stage_done("s", rows=0, stats={"k": 1})
    store.stage_started("s")  # a rerun starts the stage again: what the first run recorded stays
    assert store.manifest.stages["s"].stats == {"k": 1}
    items = [(str(i), "t") for i in range(6)]
    fresh = RunStore.open(tmp_path / "run2", {"n": 2})
    with pytest.raises(KeyboardInterrupt):
        _run(fresh, items, fail_after=2)  # killed after 2 of 3 chunks
    first = RunStore.load(tmp_path / "run2").manifest.stages["s"]
    assert (first.status, first.rows, first.attempts, first.seconds) == ("running", 4, 1, 2.0)
    again = RunStore.open(tmp_path / "run2", {"n": 2})
    _run(again, items)
    status = RunStore.load(tmp_path / "run2").manifest.stages["s"]
    assert (status.status, status.rows, status.attempts) == ("done", 6, 2)
    assert status.seconds == 3.0  # the killed attempt's two chunks, and the resumed one
    _run(again, items)  # nothing left to do: not an attempt
    assert RunStore.load(tmp_path / "run2").manifest.stages["s"].attempts == 2


def test_manifest_is_fsynced_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    import os

    fsynced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = RunStore.open(tmp_path / "run", {"n": 2})
    fsynced.clear()
    store.stage_started("s")
    assert any(os.path.basename(p).startswith(".manifest.json") for p in fsynced), fsynced
    assert str(tmp_path / "run") in fsynced  # the rename itself is made durable
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["s"]["status"] == "running"
    assert not list((tmp_path / "run").glob(".manifest.json*"))  # no temp file left behind


def test_a_renamed_stage_resumes_under_its_new_name(tmp_path):
    store = RunStore.open(tmp_path / "run", {"n": 2})
    with pytest.raises(KeyboardInterrupt):
        _run(store, [("a", "x"), ("b", "y"), ("c", "w")], fail_after=1)  # killed after a and b
    (tmp_path / "run" / "s.jsonl").rename(tmp_path / "run" / "old.jsonl")  # as the stage was named before
    store.manifest.stages["old"] = store.manifest.stages.pop("s")
    store.save()
    before = store.manifest.stages["old"].model_dump()

    again = RunStore.open(tmp_path / "run", {"n": 2})
    again.rename_stage("old", "s")
    assert not (tmp_path / "run" / "old.jsonl").exists() and "old" not in again.manifest.stages
    on_disk = RunStore.load(tmp_path / "run").manifest.stages
    assert list(on_disk) == ["s"] and on_disk["s"].model_dump() == before  # status, seconds and attempts kept
    result = _run(again, [("a", "x"), ("b", "y"), ("c", "w")])
    assert (result.written, result.skipped) == (1, 2)  # a and b are not redone
    assert [r["text"] for r in again.rows("s")] == ["X", "Y", "W"]
    again.rename_stage("old", "s")  # nothing left under the old name: nothing to do
    assert [r["text"] for r in again.rows("s")] == ["X", "Y", "W"]


def test_renaming_a_stage_finishes_after_a_crash_and_refuses_to_merge(tmp_path):
    store = RunStore.open(tmp_path / "run", {"n": 2})
    _run(store, [("a", "x")])
    store.rename_stage("s", "t")
    store.stage_path("t").rename(store.stage_path("s"))  # a crash after the manifest, before the file moved
    RunStore.load(tmp_path / "run").rename_stage("s", "t")
    assert [r["text"] for r in read_rows(tmp_path / "run" / "t.jsonl")] == ["X"]
    assert not (tmp_path / "run" / "s.jsonl").exists()

    _run(store, [("a", "x")])  # a stage 's' again, beside 't': neither may overwrite the other
    with pytest.raises(StoreCorruptError, match="has stage 's' and stage 't' both"):
        RunStore.load(tmp_path / "run").rename_stage("s", "t")
    assert read_rows(tmp_path / "run" / "s.jsonl") and read_rows(tmp_path / "run" / "t.jsonl")


def test_a_changed_section_is_reported_field_by_field(tmp_path):
    old = {"train": {"method": "simpo", "beta": 10.0, "lora": {"r": 16}}, "seed": 0}
    new = {"train": {"trainer": "simpo", "simpo": {"beta": 10.0}, "lora": {"r": 8}}, "seed": 0}
    RunStore.open(tmp_path / "run", old)
    with pytest.raises(ResumeConflictError) as refused:
        RunStore.open(tmp_path / "run", new)
    message = str(refused.value)
    assert "train.lora.r: 16 -> 8" in message and "train.method: 'simpo' -> (absent)" in message
    assert "train.simpo: (absent) -> {'beta': 10.0}" in message and "seed" not in message
