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
    assert "gpt-4 vs alpaca-13b: win rate" in proc.stdout and f"(2 pairs, judged by {tiny_model_dir})" in proc.stdout
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


def test_eval_of_a_run_judges_every_iteration_with_the_starting_model(tmp_path, tiny_model_dir, chatty_tiny_dir):
    # Issue 14: `--run` let each iteration judge itself, so the win rates came from different judges.
    run_dir = tmp_path / "run"
    (run_dir / "iter-1").mkdir(parents=True)
    (run_dir / "iter-2").mkdir()
    (run_dir / "recipe.yaml").write_text(json.dumps({"model": str(tiny_model_dir)}))
    (run_dir / "iter-1" / "model").symlink_to(chatty_tiny_dir)
    (run_dir / "iter-2" / "model").symlink_to(tiny_model_dir)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": q}) + "\n" for i, q in enumerate(["Hi", "Bye"])))
    recipe = tmp_path / "run.yaml"  # a run recipe's engine applies to sao eval --recipe too
    recipe.write_text(json.dumps({"engine": {"dtype": "float32"}, "iterations": 2}))
    args = ["eval", "-i", str(prompts), "--run", str(run_dir), "--recipe", str(recipe)]
    args += ["--set", "decoding.max_new_tokens=4", "--set", "decoding.top_p=1", "--set", "n_boot=5"]

    proc = run(*args, "-o", str(tmp_path / "fixed"))
    assert proc.returncode == 0, proc.stderr
    for k in (1, 2):
        judge = json.loads((tmp_path / "fixed" / f"iter-{k}" / "judge" / "manifest.json").read_text())["model"]
        assert (judge["spec"], judge["dtype"]) == (str(tiny_model_dir), "float32")
        assert f"iter-{k} vs {tiny_model_dir.name}: win rate" in proc.stdout
    assert proc.stdout.count(f"judged by {tiny_model_dir})") == 2
    summary = json.loads((tmp_path / "fixed" / "summary.json").read_text())
    assert [c["judge"] for c in summary["comparisons"]] == [str(tiny_model_dir)] * 2
    assert f"Judge: `{tiny_model_dir}` scored every comparison" in (tmp_path / "fixed" / "report.md").read_text()

    # SAO's own way stays available, and says what it is.
    proc = run(*args, "-o", str(tmp_path / "self"), "--judge", "self")
    assert proc.returncode == 0, proc.stderr
    judge = json.loads((tmp_path / "self" / "iter-1" / "judge" / "manifest.json").read_text())["model"]
    assert judge["spec"] == str(run_dir / "iter-1" / "model")
    assert "judged by iter-1 (self)" in proc.stdout
    assert "Judge: self. Each candidate judged its own comparison" in (tmp_path / "self" / "report.md").read_text()
