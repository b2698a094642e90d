"""The command line as a user meets it: subprocesses, exit codes, one-line errors, kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

SAO = [sys.executable, "-m", "sao"]


def run(*args, **kw):
    return subprocess.run([*SAO, *args], capture_output=True, text=True, timeout=300, **kw)


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sao: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0]


def test_every_command_has_help():
    for cmd in (
        [],
        ["chat"],
        ["generate"],
        ["prepare-model"],
        ["synth"],
        ["train"],
        ["run"],
        ["stats"],
        ["eval"],
        ["judge-eval"],
    ):
        proc = run(*cmd, "--help")
        assert proc.returncode == 0 and "Usage" in proc.stdout


def test_missing_input_file(tmp_path):
    proc = run("generate", "--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, "nope.jsonl: no such file")


def test_malformed_jsonl_names_the_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "ok"}\n\n{"prompt": oops}\n')
    proc = run("generate", "--input", str(f), "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, "p.jsonl:3: invalid JSON")


def test_unknown_models(tmp_path):
    assert_one_line_error(run("chat", "--model", str(tmp_path / "missing"), "hi"), "unknown model", "missing")
    # A hub id with no network and no local copy; HF_HUB_OFFLINE skips the DNS probe.
    proc = run("chat", "--model", "no-such-org/no-such-model", "hi", env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert_one_line_error(proc, "no-such-org/no-such-model", "not in the local HF cache")


def test_eval_errors_are_one_line(tmp_path):
    mt = os.path.join(os.path.dirname(__file__), "data", "mt_bench")
    answers = os.path.join(mt, "model_answer", "gpt-4.jsonl")
    proc = run("eval", "-o", str(tmp_path), "-m", answers, "--baseline", answers)
    assert_one_line_error(proc, "instructions", "Field required")
    questions = os.path.join(mt, "question.jsonl")
    proc = run("eval", "-o", str(tmp_path), "-i", questions, "-m", answers, "--baseline", answers)
    assert_one_line_error(proc, "judge.model: 'self' needs model candidates")
    proc = run("eval", "-o", str(tmp_path), "-i", questions, "-m", answers, "--baseline", "b", "--set", "limit=0")
    assert_one_line_error(proc, "limit")
    proc = run("judge-eval", "--pairs", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "j"))
    assert_one_line_error(proc, "none.jsonl: no such file")


def test_eval_from_answer_files(tmp_path, tiny_model_dir):
    mt = os.path.join(os.path.dirname(__file__), "data", "mt_bench")
    args = ["eval", "-o", str(tmp_path), "-i", os.path.join(mt, "question.jsonl"), "--limit", "2"]
    args += ["-m", os.path.join(mt, "model_answer", "gpt-4.jsonl")]
    args += ["--baseline", os.path.join(mt, "model_answer", "alpaca-13b.jsonl"), "--judge", str(tiny_model_dir)]
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    assert "gpt-4 vs alpaca-13b: win rate" in proc.stdout and "(2 pairs)" in proc.stdout
    assert (tmp_path / "report.md").is_file()


def test_eval_harness_offline_names_the_dataset(tmp_path, tiny_model_dir):
    hf = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    args = ["eval", "-o", str(tmp_path / "e"), "-m", str(tiny_model_dir), "--harness", "gsm8k", "--harness-limit", "2"]
    proc = run(*args, env={**os.environ, **hf})
    assert_one_line_error(proc, "lm_eval task 'gsm8k' needs the dataset 'openai/gsm8k'")


def test_bad_dtype_names_the_field(tiny_model_dir):
    assert_one_line_error(run("chat", "--model", str(tiny_model_dir), "--dtype", "fp7", "hi"), "dtype:")


def test_changed_config_is_refused_then_forced(tmp_path, tiny_model_dir):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "hello"}\n')
    base = [
        "generate",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(f),
        "--out",
        str(tmp_path / "run"),
        "--max-new-tokens",
        "3",
        # top-p < 1 on a random model's flat distribution takes the slow full-sort path.
        "--top-p",
        "1",
    ]
    assert run(*base).returncode == 0
    assert_one_line_error(run(*base, "--n", "3"), "n: 2 -> 3", "--force")
    forced = run(*base, "--n", "3", "--force")
    assert forced.returncode == 0, forced.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "generations.jsonl").read_text().splitlines()]
    assert len(rows[0]["samples"]) == 3


def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path, tiny_model_dir):
    total = 300
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": f"question number {i}"}) + "\n" for i in range(total))
    )
    out = tmp_path / "run"
    args = [
        "generate",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(prompts),
        "--out",
        str(out),
        "--n",
        "2",
        "--max-new-tokens",
        "24",
        "--batch-size",
        "8",
        "--chunk-size",
        "4",
        "--top-p",
        "1",
    ]
    proc = subprocess.Popen([*SAO, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage = out / "generations.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if stage.exists() and stage.read_bytes().count(b"\n") >= 12:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = stage.read_bytes().count(b"\n")
    assert 12 <= written < total

    resumed = run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{written} resumed" in resumed.stdout
    ids = [json.loads(line)["id"] for line in stage.read_text().splitlines()]
    assert len(ids) == total
    assert sorted(ids) == sorted(f"q{i}" for i in range(total))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["generations"]["status"] == "done"
    assert manifest["stages"]["generations"]["stats"]["samples"] == 2 * total
