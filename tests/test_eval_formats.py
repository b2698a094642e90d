"""Reading and writing benchmark files: real MT-Bench files from FastChat, AlpacaEval JSON and plain JSONL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sao.errors import ConfigError, InputError
from sao.eval.formats import (
    Instruction,
    Output,
    read_instructions,
    read_outputs,
    write_alpaca_eval,
    write_mt_bench_answers,
)
from sao.stages.generate import load_prompts

MT_BENCH = Path(__file__).parent / "data" / "mt_bench"
QUESTIONS = MT_BENCH / "question.jsonl"
MT_BENCH_IDS = [str(i) for i in range(81, 161)]


def raw_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    return write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


# --- MT-Bench (the vendored FastChat files) ---


def test_mt_bench_questions_give_the_first_turn_by_default():
    instructions = read_instructions(QUESTIONS)
    rows = raw_rows(QUESTIONS)
    assert [i.id for i in instructions] == MT_BENCH_IDS
    for instruction, row in zip(instructions, rows, strict=True):
        assert instruction.messages == [{"role": "user", "content": row["turns"][0]}]
        assert instruction.category == row["category"]
        assert instruction.dataset is None
    assert instructions[0].messages[0]["content"].startswith("Compose an engaging travel blog post about")
    assert {i.category for i in instructions} == {
        "writing",
        "roleplay",
        "reasoning",
        "math",
        "coding",
        "extraction",
        "stem",
        "humanities",
    }


def test_mt_bench_questions_all_turns_are_the_user_turns_in_order():
    instructions = read_instructions(QUESTIONS, turns="all")
    rows = raw_rows(QUESTIONS)
    assert [i.id for i in instructions] == MT_BENCH_IDS
    for instruction, row in zip(instructions, rows, strict=True):
        assert [m["role"] for m in instruction.messages] == ["user", "user"]
        assert [m["content"] for m in instruction.messages] == row["turns"]


@pytest.mark.parametrize("model", ["gpt-4", "alpaca-13b"])
def test_mt_bench_answer_files_are_keyed_by_question_id(model):
    path = MT_BENCH / "model_answer" / f"{model}.jsonl"
    rows = {str(row["question_id"]): row for row in raw_rows(path)}
    first = read_outputs(path)
    second = read_outputs(path, turn=1)
    assert list(first) == MT_BENCH_IDS
    assert set(first) == {i.id for i in read_instructions(QUESTIONS)}
    for qid, output in first.items():
        assert output.id == qid
        assert output.generator == model
        assert output.text == rows[qid]["choices"][0]["turns"][0]
        assert second[qid].text == rows[qid]["choices"][0]["turns"][1]
    assert first["81"].text != second["81"].text


def test_mt_bench_answer_turn_out_of_range_names_the_line():
    with pytest.raises(InputError, match=r"gpt-4\.jsonl:1: .*no turn index 2"):
        read_outputs(MT_BENCH / "model_answer" / "gpt-4.jsonl", turn=2)


def test_mt_bench_answers_round_trip(tmp_path):
    instructions = read_instructions(QUESTIONS)
    outputs = read_outputs(MT_BENCH / "model_answer" / "alpaca-13b.jsonl")
    path = tmp_path / "model_answer" / "sao-model.jsonl"
    write_mt_bench_answers(path, instructions, outputs, "sao-model")

    back = read_outputs(path)
    assert all(len(o.later) == 1 for o in outputs.values())  # MT-Bench answers hold both turns; both survive
    assert back == {qid: Output(qid, o.text, "sao-model", o.later) for qid, o in outputs.items()}
    rows = raw_rows(path)
    assert [row["question_id"] for row in rows] == list(range(81, 161))  # ints, as FastChat matches them
    for row in rows:
        assert set(row) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
        assert row["model_id"] == "sao-model"
        answer = outputs[str(row["question_id"])]
        assert row["choices"] == [{"index": 0, "turns": [answer.text, *answer.later]}]
        assert isinstance(row["answer_id"], str) and row["answer_id"]
        assert isinstance(row["tstamp"], float)
    assert len({row["answer_id"] for row in rows}) == 80


def test_mt_bench_writer_keeps_non_numeric_ids_as_strings(tmp_path):
    instructions = [
        Instruction(id=qid, messages=[{"role": "user", "content": f"q {qid}"}]) for qid in ["abc", "007", "12"]
    ]
    outputs = {i.id: Output(id=i.id, text=f"answer to {i.id} — ünïcode ✓") for i in instructions}
    path = tmp_path / "answers.jsonl"
    write_mt_bench_answers(path, instructions, outputs, "m")
    assert [row["question_id"] for row in raw_rows(path)] == ["abc", "007", 12]
    assert path.read_bytes().isascii()
    assert read_outputs(path) == {k: Output(id=k, text=v.text, generator="m") for k, v in outputs.items()}


# --- AlpacaEval ---

ALPACA_ITEMS = [
    {"instruction": "Écris un haïku sur le café.", "dataset": "helpful_base", "output": "x", "generator": "ref"},
    {"instruction": "日本の首都はどこですか？", "dataset": "koala", "output": "y", "generator": "ref"},
    {"instruction": "Name three prime numbers.", "dataset": "selfinstruct", "output": "z", "generator": "ref"},
]


def test_alpaca_eval_set_reads_instructions_and_reference_outputs(tmp_path):
    path = write_text(tmp_path / "alpaca_eval.json", json.dumps(ALPACA_ITEMS, indent=4))
    instructions = read_instructions(path)
    assert instructions == [
        Instruction(id=str(i), messages=[{"role": "user", "content": item["instruction"]}], dataset=item["dataset"])
        for i, item in enumerate(ALPACA_ITEMS)
    ]
    assert read_outputs(path) == {
        str(i): Output(id=str(i), text=item["output"], generator="ref") for i, item in enumerate(ALPACA_ITEMS)
    }


def test_alpaca_eval_round_trip_with_non_ascii(tmp_path):
    source = write_text(tmp_path / "eval_set.json", json.dumps(ALPACA_ITEMS, ensure_ascii=False))
    instructions = read_instructions(source)
    answers = ["Café noir —\nvapeur sur la tasse ☕", "東京です。", "2, 3 and 5 😀"]
    outputs = {i.id: Output(id=i.id, text=text, generator="sao-model") for i, text in zip(instructions, answers)}
    path = tmp_path / "out" / "model_outputs.json"
    write_alpaca_eval(path, instructions, outputs, "sao-model")

    assert read_instructions(path) == instructions
    assert read_outputs(path) == outputs
    assert json.loads(path.read_text(encoding="utf-8")) == [
        {"instruction": item["instruction"], "output": text, "generator": "sao-model", "dataset": item["dataset"]}
        for item, text in zip(ALPACA_ITEMS, answers)
    ]


def test_alpaca_eval_ids_come_from_an_id_field_when_present(tmp_path):
    items = [{"id": "a1", "instruction": "Say hi.", "output": "hi"}, {"id": 7, "instruction": "Say bye.", "output": ""}]
    path = write_text(tmp_path / "items.json", json.dumps(items))
    assert [i.id for i in read_instructions(path)] == ["a1", "7"]
    assert read_outputs(path) == {"a1": Output(id="a1", text="hi"), "7": Output(id="7", text="")}


def test_alpaca_eval_rows_as_json_lines_read_like_the_array(tmp_path):
    array = read_instructions(write_text(tmp_path / "set.json", json.dumps(ALPACA_ITEMS)))
    lines = read_instructions(write_jsonl(tmp_path / "set.jsonl", ALPACA_ITEMS))
    assert lines == array


def test_alpaca_eval_writer_refuses_multi_turn_instructions(tmp_path):
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    instructions = [Instruction(id="q1", messages=messages)]
    with pytest.raises(InputError, match=r"out\.json: instruction 'q1' .*one user turn"):
        write_alpaca_eval(tmp_path / "out.json", instructions, {"q1": Output(id="q1", text="d")}, "m")


def test_alpaca_eval_writer_drops_system_messages(tmp_path):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    path = tmp_path / "out.json"
    write_alpaca_eval(path, [Instruction(id="0", messages=messages)], {"0": Output(id="0", text="Hi.")}, "m")
    assert json.loads(path.read_text())[0]["instruction"] == "Hi?"


# --- plain JSONL ---


def test_plain_jsonl_with_ids(tmp_path):
    path = write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"id": "p1", "prompt": "What is 2+2?", "category": "math"},
            {"id": 2, "messages": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "Hi"}]},
        ],
    )
    assert read_instructions(path) == [
        Instruction(id="p1", messages=[{"role": "user", "content": "What is 2+2?"}], category="math"),
        Instruction(id="2", messages=[{"role": "system", "content": "Terse."}, {"role": "user", "content": "Hi"}]),
    ]


def test_plain_jsonl_without_ids_uses_the_generate_stage_ids(tmp_path):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "A?"}, {"prompt": "B?"}, {"prompt": "A?"}])
    instructions = read_instructions(path)
    assert [i.id for i in instructions] == [p.id for p in load_prompts(path)]
    assert len({i.id for i in instructions}) == 3
    assert instructions[0].id != instructions[1].id
    assert [i.messages[0]["content"] for i in instructions] == ["A?", "B?", "A?"]
    assert read_instructions(path) == instructions  # stable across reads


def test_plain_jsonl_outputs_take_output_or_text(tmp_path):
    path = write_jsonl(
        tmp_path / "outputs.jsonl",
        [{"id": "p1", "output": "4", "generator": "m"}, {"id": 2, "text": "Hello"}],
    )
    assert read_outputs(path) == {"p1": Output(id="p1", text="4", generator="m"), "2": Output(id="2", text="Hello")}


# --- malformed input: one InputError that names the file ---

BAD_INSTRUCTION_FILES = [
    ("object.json", '{\n  "instruction": "x"\n}\n', "one JSON object over several lines"),
    ("numbers.json", "[1, 2]", r"item 0: expected a JSON object, got int"),
    ("truncated.json", '[{"instruction": "a"},', "invalid JSON"),
    ("no_instruction.json", '[{"instruction": "a"}, {"output": "b"}]', r"item 1: needs a non-empty 'instruction'"),
    ("input_field.json", '[{"instruction": "a", "input": "b"}]', r"item 0: .*'input'"),
    ("no_turns.jsonl", '{"question_id": 1, "turns": ["a"]}\n{"question_id": 2}\n', r":2: MT-Bench question needs"),
    ("empty_turns.jsonl", '{"question_id": 1, "turns": []}\n', r":1: MT-Bench question needs"),
    ("bad_qid.jsonl", '{"question_id": 1.5, "turns": ["a"]}\n', r":1: 'question_id' must be"),
    ("no_prompt.jsonl", '{"id": 1, "prompt": "a"}\n{"id": 2, "text": "b"}\n', r":2: needs a non-empty 'prompt'"),
    ("bad_line.jsonl", '{"prompt": "a"}\nnot json\n', r":2: invalid JSON"),
    ("bad_category.jsonl", '{"prompt": "a", "category": 3}\n', r":1: 'category' must be a string"),
    ("empty.jsonl", "\n\n", "no instructions"),
    ("dup.jsonl", '{"id": "5", "prompt": "a"}\n{"id": 5, "prompt": "b"}\n', r":2: id '5' already used"),
    ("dup.json", '[{"id": "x", "instruction": "a"}, {"id": "x", "instruction": "b"}]', r"item 1: id 'x' already used"),
    ("dup_q.jsonl", '{"question_id": 3, "turns": ["a"]}\n{"question_id": "3", "turns": ["b"]}\n', r"id '3'"),
]


@pytest.mark.parametrize(
    ("name", "content", "message"), BAD_INSTRUCTION_FILES, ids=[b[0] for b in BAD_INSTRUCTION_FILES]
)
def test_malformed_instruction_files_raise_input_error_naming_the_file(tmp_path, name, content, message):
    path = write_text(tmp_path / name, content)
    with pytest.raises(InputError, match=message) as info:
        read_instructions(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


BAD_OUTPUT_FILES = [
    ("object.json", '{\n  "output": "x"\n}\n', "one JSON object over several lines"),
    ("no_output.json", '[{"instruction": "a", "generator": "m"}]', r"item 0: needs an 'output' string"),
    ("bad_generator.json", '[{"output": "a", "generator": 1}]', r"item 0: 'generator' must be a string"),
    ("no_choices.jsonl", '{"question_id": 81, "model_id": "m"}\n', r":1: MT-Bench answer needs a non-empty 'choices'"),
    ("bad_turns.jsonl", '{"question_id": 81, "choices": [{"turns": "a"}]}\n', r":1: 'choices\[0\]\.turns' must be"),
    ("no_id.jsonl", '{"output": "a"}\n', r":1: needs 'id'"),
    ("no_text.jsonl", '{"id": "a", "answer": "b"}\n', r":1: needs an 'output' \(or 'text'\) string"),
    ("empty.json", "[]", "no outputs"),
    ("dup.jsonl", '{"id": "a", "output": "1"}\n{"id": "a", "output": "2"}\n', r":2: id 'a' already used at .*:1"),
    (
        "dup_answers.jsonl",
        '{"question_id": 81, "choices": [{"turns": ["a"]}]}\n{"question_id": 81, "choices": [{"turns": ["b"]}]}\n',
        r":2: id '81' already used",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_OUTPUT_FILES, ids=[b[0] for b in BAD_OUTPUT_FILES])
def test_malformed_output_files_raise_input_error_naming_the_file(tmp_path, name, content, message):
    path = write_text(tmp_path / name, content)
    with pytest.raises(InputError, match=message) as info:
        read_outputs(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl: no such file"):
        read_instructions(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="nope.json: no such file"):
        read_outputs(tmp_path / "nope.json")


def test_bad_turn_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="turns"):
        read_instructions(QUESTIONS, turns="second")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="turn"):
        read_outputs(MT_BENCH / "model_answer" / "gpt-4.jsonl", turn=-1)


# --- writers check before writing, and never leave half a file ---


def test_writers_name_the_instruction_without_an_output(tmp_path):
    instructions = read_instructions(QUESTIONS)
    outputs = read_outputs(MT_BENCH / "model_answer" / "gpt-4.jsonl")
    del outputs["100"]
    for write, name in [(write_mt_bench_answers, "a.jsonl"), (write_alpaca_eval, "a.json")]:
        with pytest.raises(InputError, match=rf"{name}: no output for 1 of 80 instructions \(first: id '100'\)"):
            write(tmp_path / name, instructions, outputs, "m")
        assert not (tmp_path / name).exists()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = write_text(tmp_path / "model_outputs.json", "old contents")
    instructions = [Instruction(id="0", messages=[{"role": "user", "content": "Hi"}])]
    outputs = {"0": Output(id="0", text="Hello")}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_alpaca_eval(path, instructions, outputs, "m")
    monkeypatch.undo()

    assert path.read_text() == "old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model_outputs.json"]
    write_alpaca_eval(path, instructions, outputs, "m")
    assert read_outputs(path) == {"0": Output(id="0", text="Hello", generator="m")}


def test_alpaca_eval_file_loads_the_way_alpaca_eval_loads_it(tmp_path):
    """alpaca_eval reads ``--model_outputs`` with ``pandas.read_json`` (utils.load_or_convert_to_dataframe)."""
    pd = pytest.importorskip("pandas")
    source = write_text(tmp_path / "eval_set.json", json.dumps(ALPACA_ITEMS))
    instructions = read_instructions(source)
    outputs = {i.id: Output(id=i.id, text=f"réponse {i.id}") for i in instructions}
    path = tmp_path / "model_outputs.json"
    write_alpaca_eval(path, instructions, outputs, "sao-model")
    frame = pd.read_json(path)
    assert list(frame.columns) == ["instruction", "output", "generator", "dataset"]
    assert frame["instruction"].tolist() == [item["instruction"] for item in ALPACA_ITEMS]
    assert frame["output"].tolist() == ["réponse 0", "réponse 1", "réponse 2"]
    assert set(frame["generator"]) == {"sao-model"}


def test_alpaca_instruction_difficulty(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps([{"instruction": "a", "instruction_difficulty": 3.5}, {"instruction": "b"}]))
    assert [i.difficulty for i in read_instructions(path)] == [3.5, None]
    path.write_text(json.dumps([{"instruction": "a", "instruction_difficulty": "hard"}]))
    with pytest.raises(InputError, match="item 0: 'instruction_difficulty' must be a number"):
        read_instructions(path)
