"""SELF-ALIGN's pure logic: topic filters and balance, questions matched back to hints, self-instruct
filters, prompt selection, every keep/drop rule of the answer and verbose stages, the training rows, the
turn format's chat template, the content loaders and the recipe's checks."""

from __future__ import annotations

import pytest

from sao import methods
from sao.engine.capabilities import CapabilityError
from sao.engine.chat_template import encode_prompt
from sao.engine.config import EngineSection
from sao.errors import ConfigError, InputError
from sao.loop.config import validate_run
from sao.methods.self_align import content
from sao.methods.self_align.answers import copied_markers, principle_prompt, read_answer
from sao.methods.self_align.config import SelfAlignConfig
from sao.methods.self_align.questions import Hint, match_hints, parse_written, question_prompt
from sao.methods.self_align.rows import sft_row, short_prompt
from sao.methods.self_align.selection import candidates, quotas, select_prompts, split_held_out
from sao.methods.self_align.tasks import parse_task, task_problem, task_prompt
from sao.methods.self_align.topics import add_topics, balance, brainstorm_prompt, parse_topics, topic_problem
from sao.methods.self_align.training import with_turns
from sao.methods.self_align.turns import Turns
from sao.methods.self_align.verbose import read_verbose, verbose_prompt
from sao.recipe import validate
from sao.synth.pipeline import check_capabilities
from sao.train.config import TrainConfig

SECTION = SelfAlignConfig()
TURNS = Turns.of(SECTION)
KINDS = content.load_question_types()
TYPES = {k.name: k for k in KINDS}
EXEMPLARS = content.load_exemplars()
PRINCIPLES = content.load_principles()
VERBOSE = content.load_verbose_prompt()
LONG = "Plants make their food by photosynthesis: light splits water, and the energy fixes carbon dioxide. " * 3


# ------------------------------------------------------------------------------------------------ content
def test_the_shipped_content_has_the_papers_shape_and_checks_out() -> None:
    assert len(PRINCIPLES) == 16 and len({p.name for p in PRINCIPLES}) == 16
    assert len(EXEMPLARS) == 5 and all(e.markers for e in EXEMPLARS)
    assert len(KINDS) == 20 and all(topic_problem(k.seed_topic, 3) is None for k in KINDS)
    assert len(content.load_seed_tasks()) == 175
    for e in EXEMPLARS:  # each exemplar's markers are its own: a copy of one names several of them
        assert copied_markers(e.answer, e.markers, "") == len(e.markers)
        assert not any(copied_markers(o.answer, e.markers, "") >= 2 for o in EXEMPLARS if o is not e)


def test_a_users_content_file_is_read_and_a_malformed_one_is_named(tmp_path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text("- {name: kind, text: Be kind.}\n- {name: brief, text: Be brief.}\n")
    assert [p.name for p in content.load_principles(str(good))] == ["kind", "brief"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: kind}\n")
    with pytest.raises(InputError, match=r"bad\.yaml: entry 1: 'text' must be a non-empty string"):
        content.load_principles(str(bad))
    with pytest.raises(InputError, match="no such file"):
        content.load_exemplars(str(tmp_path / "missing.yaml"))
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"id": "a", "instruction": "Say hi."}\nnot json\n')
    with pytest.raises(InputError, match=r"seeds\.jsonl: line 2 is not JSON"):
        content.load_seed_tasks(str(seeds))


# ------------------------------------------------------------------------------------------------ topics
def test_brainstorm_prompt_numbers_the_shown_topics_and_leaves_the_next_open() -> None:
    prompt = brainstorm_prompt(KINDS[0], ["Tides", "Plate Tectonics"], 10)
    assert prompt.endswith("1. Tides\n2. Plate Tectonics\n3.") and "A list of 12 different topics" in prompt


def test_parse_topics_reads_the_numbered_lines_until_the_list_ends() -> None:
    text = " Solar Wind\n4. – Deep Sea Vents\n5. **Tidal Locking**\nThat is all.\n6. Late Item"
    assert parse_topics(text, 3) == ["Solar Wind", "Deep Sea Vents", "Tidal Locking"]


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("Black Holes", None),
        ("DNA Repair", None),
        ("", "empty"),
        ("Black Holes.", "trailing_punctuation"),
        ("The History Of Rome", "too_many_words"),
        ("black holes", "not_capitalised"),
        ("Why: Stars", "not_a_phrase"),
    ],
)
def test_topic_filter(topic, reason) -> None:
    assert topic_problem(topic, 3) == reason


def test_add_topics_dedups_case_insensitively_and_stops_at_the_limit() -> None:
    candidates = ["TIDES", "Moon Phases", "Moon phases", "eclipses", "Comets", "Auroras"]
    kept, dropped = add_topics(["Tides"], candidates, 3, 2)
    assert kept == ["Tides", "Moon Phases", "Comets"]
    assert dropped == {"duplicate": 2, "not_capitalised": 1, "over_limit": 1}


def test_balance_cuts_every_type_to_the_smallest_that_has_topics() -> None:
    assert balance({"a": ["A1", "A2", "A3"], "b": ["B1", "B2"], "c": []}) == {"a": ["A1", "A2"], "b": ["B1", "B2"]}
    assert balance({"a": [], "b": []}) == {}


# ------------------------------------------------------------------------------------------------ questions
def test_question_prompt_shows_seed_examples_and_leaves_the_first_hint_open() -> None:
    hints = [Hint("legal_expertise", "Tenancy Law"), Hint("moral_dilemmas", "Lifeboat Ethics")]
    prompt = question_prompt(hints, TYPES, [TYPES["scientific_knowledge"]])
    assert TYPES["scientific_knowledge"].seed_question in prompt
    assert "| Topic: Lifeboat Ethics" in prompt  # the hints still to cover are listed
    assert prompt.endswith(f"Type: {TYPES['legal_expertise'].description}\nTopic: Tenancy Law\nQuestion:")


def test_written_questions_are_matched_back_to_their_hints() -> None:
    legal, moral = TYPES["legal_expertise"], TYPES["moral_dilemmas"]
    hints = [Hint(legal.name, "Tenancy Law"), Hint(moral.name, "Lifeboat Ethics")]
    reply = (
        " Can my landlord evict me for owning a cat?\n\n"
        f"Type: {moral.description}\nTopic: lifeboat ethics.\nQuestion: Who should be left behind?\n\n"
        f"Type: {moral.name}\nTopic: Organ Donation\nQuestion: Should I sell a kidney?\n\n"
        "Type: nonsense\nTopic: Tenancy Law\nQuestion: Is this matched?\n"
        f"Type: {legal.description}\nTopic: Tenancy Law\nQuestion:\n"  # an empty question is no question
    )
    written = parse_written(reply, hints[0], TYPES)
    assert [w.question for w in written][:2] == [
        "Can my landlord evict me for owning a cat?",
        "Who should be left behind?",
    ]
    matched, unmatched = match_hints(written, hints, TYPES)
    assert [(h.topic, q) for h, q in matched] == [
        ("Tenancy Law", "Can my landlord evict me for owning a cat?"),
        ("Lifeboat Ethics", "Who should be left behind?"),
    ]
    assert unmatched == 2  # a topic outside the request, and a type that is none


# ------------------------------------------------------------------------------------------------ tasks
def test_task_prompt_and_parse() -> None:
    seeds = content.load_seed_tasks()[:5]
    assert task_prompt(seeds).endswith("\n6.")
    assert parse_task(" Write a haiku about rain.\n7. Another task") == "Write a haiku about rain."
    assert parse_task(" Name three rivers.\n\nSome chatter") == "Name three rivers."


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ("Write a haiku about autumn rain.", None),
        ("Update my profile description for a job site.", None),  # 'file' inside a word is no file
        ("", "empty"),
        ("Say hi.", "too_short"),
        ("word " * 151, "too_long"),
        ("- List three colours please", "starts_with_punctuation"),
        ("Draw a picture of a cat for me.", "blacklisted"),
        ("Open this file and summarise it.", "blacklisted"),
    ],
)
def test_task_filter(task, reason) -> None:
    assert task_problem(task.strip(), 4, 150, SECTION.self_instruct.blacklist) == reason


# ------------------------------------------------------------------------------------------------ prompts
def _question_rows() -> list[dict]:
    def q(hint: str, topic: str, text: str) -> dict:
        return {"hint": f"{hint}:{topic.lower()}", "type": hint, "topic": topic, "question": text}

    rent = "Can my landlord in Porto raise the rent mid-contract?"
    verbal = "Is a verbal tenancy binding in Ghana today?"
    kidney = "Should a poor man sell his kidney to pay debts?"
    return [
        {
            "id": "q-1",
            "questions": [q("legal_expertise", "Tenancy Law", rent), q("legal_expertise", "Tenancy Law", verbal)],
        },
        {
            "id": "q-2",
            "questions": [q("moral_dilemmas", "Lifeboat Ethics", rent), q("moral_dilemmas", "Trolley Problem", "Why?")],
        },
        {"id": "q-3", "questions": [q("moral_dilemmas", "Organ Sales", kidney)]},
    ]


def test_prompt_selection_drops_duplicate_hints_short_and_near_duplicate_questions() -> None:
    tasks = [{"id": "task-0", "task": "Write a short poem about the sea at night."},
             {"id": "task-1", "task": "Write a short poem about the sea at night!"}]  # fmt: skip
    section = SECTION.model_copy(update={"prompts": SECTION.prompts.model_copy(update={"total": 10})})
    rows = {r.id: r for r in select_prompts(section, candidates(section, _question_rows(), tasks, KINDS, []))}
    assert rows["tgrt-q-1-0"].drop_reason is None
    assert rows["tgrt-q-1-1"].drop_reason == "duplicate_hint"  # Tenancy Law is served already
    assert rows["tgrt-q-2-0"].drop_reason == "near_duplicate"  # the same text for another hint
    assert rows["tgrt-q-2-1"].drop_reason == "too_short"
    assert rows["tgrt-q-3-0"].drop_reason is None
    assert rows["si-task-0"].drop_reason is None and rows["si-task-1"].drop_reason == "near_duplicate"
    # A task that repeats a seed task is dropped too (Self-Instruct's filter).
    seed = content.SeedTask("s1", "Write a short poem about the sea at night.")
    again = {r.id: r for r in select_prompts(section, candidates(section, [], tasks[:1], KINDS, [seed]))}
    assert again["si-task-0"].drop_reason == "near_duplicate"


def test_quotas_take_the_share_and_fill_up_from_the_other_side() -> None:
    assert quotas(10, 0.5, 20, 20) == (5, 5)
    assert quotas(10, 0.5, 2, 20) == (2, 8)
    assert quotas(10, 0.5, 20, 1) == (9, 1)
    assert quotas(10, 1.0, 3, 3) == (3, 3)
    assert quotas(10, 0.0, 3, 30) == (0, 10)


def test_prompts_over_the_quota_are_dropped_as_such() -> None:
    tasks = [{"id": f"task-{i}", "task": f"Give me {w} tips about keeping {w} houseplants alive"} for i, w in
             enumerate(["three", "seven", "twelve", "many"])]  # fmt: skip
    section = SECTION.model_copy(
        update={"prompts": SECTION.prompts.model_copy(update={"total": 3, "tgrt_share": 0.34})}
    )
    rows = select_prompts(section, candidates(section, _question_rows(), tasks, KINDS, []))
    kept = [r for r in rows if r.drop_reason is None]
    assert len(kept) == 3 and sum(r.source == "tgrt" for r in kept) == 1
    assert sum(r.drop_reason == "over_quota" for r in rows) == (2 - 1) + (4 - 2)  # per side: alive - quota


def test_held_out_split_is_seeded_and_stable_when_rows_are_added() -> None:
    rows = [{"id": f"r{i}"} for i in range(10)]
    held, rest = split_held_out(rows, 3, 7)
    assert len(held) == 3 and len(rest) == 7 and {r["id"] for r in held}.isdisjoint(r["id"] for r in rest)
    assert split_held_out(list(reversed(rows)), 3, 7)[0] == list(reversed(held))
    assert split_held_out(rows, 3, 8)[0] != held
    assert split_held_out(rows[:2], 3, 7) == (rows[:2], [])


# ------------------------------------------------------------------------------------------------ answers
def _read(continuation: str, query: str = "How do plants eat?"):
    a = SECTION.answers
    return read_answer(
        continuation, TURNS, query, EXEMPLARS,
        min_chars=a.min_chars, refusal_openers=a.refusal_openers, copy_markers=a.copy_markers,
    )  # fmt: skip


def test_principle_prompt_holds_rules_exemplars_and_ends_in_the_thoughts() -> None:
    identity = SECTION.identity.format(name=SECTION.name)
    prompt = principle_prompt(PRINCIPLES, EXEMPLARS, TURNS, SECTION.name, identity, "How do plants eat?")
    assert all(p.text in prompt for p in PRINCIPLES) and all(e.answer in prompt for e in EXEMPLARS)
    assert prompt.index(PRINCIPLES[-1].text) < prompt.index(EXEMPLARS[0].user) < prompt.index("How do plants eat?")
    assert prompt.endswith("### User\nHow do plants eat?\n\n### Sage (internal thoughts)\n" + identity)
    assert prompt.count(identity) == len(EXEMPLARS) + 1  # every answer turn starts with it


def test_a_well_formed_answer_is_kept_with_its_thoughts_cut_at_the_next_turn() -> None:
    read = _read(f" The user asks about plants. Rule 2 (informative) applies.\n\n### Sage\n{LONG}\n\n### User\nMore?")
    assert read.drop_reason is None
    assert read.thoughts == "The user asks about plants. Rule 2 (informative) applies."
    assert read.answer == LONG.strip()


@pytest.mark.parametrize(
    ("continuation", "reason"),
    [
        (f"\n\n### Sage\n{LONG}", "bad_format"),  # no thoughts
        (f"### User\nHi\n\n### Sage\n{LONG}", "bad_format"),  # opens a turn of its own
        (" The user asks about plants, and that is all.", "no_answer_marker"),
        (f" Thoughts.\n\n### User\nAnother question\n\n### Sage\n{LONG}", "no_answer_marker"),  # after a new turn
        (" Thoughts.\n\n### Sage\nPlants eat light.\n\n### User\n" + LONG, "too_short"),  # cut at the next turn
        (" Thoughts.\n\n### Sage\nI'm sorry, but " + LONG, "refusal"),
        (" Thoughts.\n\n### Sage\n" + EXEMPLARS[1].answer, "copies_exemplar"),
    ],
)
def test_every_answer_drop_rule(continuation, reason) -> None:
    assert _read(continuation).drop_reason == reason


def test_markers_the_query_names_do_not_make_a_copy() -> None:
    e = EXEMPLARS[1]
    answer = LONG + " " + " ".join(e.markers)
    assert _read(" T.\n\n### Sage\n" + answer).drop_reason == "copies_exemplar"
    assert _read(" T.\n\n### Sage\n" + answer, query="Tell me: " + " ".join(e.markers)).drop_reason is None


# ------------------------------------------------------------------------------------------------ verbose
def test_verbose_prompt_and_every_verbose_rule() -> None:
    prompt = verbose_prompt(VERBOSE, TURNS, "Sage", "How do plants eat?")
    assert VERBOSE.description in prompt and VERBOSE.exemplar.answer in prompt
    assert prompt.endswith("### User\nHow do plants eat?\n\n### Sage\n")
    v = SECTION.verbose

    def read(text: str) -> tuple[str, str | None]:
        return read_verbose(
            text, TURNS, VERBOSE, "How do plants eat?", min_chars=v.min_chars, copy_markers=v.copy_markers
        )

    assert read(LONG + "\n### User\nThanks") == (LONG.strip(), None)
    assert read("Light.\n### User\n" + LONG)[1] == "too_short"
    assert read(VERBOSE.exemplar.answer)[1] == "copies_exemplar"


# ------------------------------------------------------------------------------------------------ rows
def test_training_rows_hold_no_principle_exemplar_or_thought_and_mask_the_prompt(smol_dir) -> None:
    from transformers import AutoTokenizer

    from sao.train.tokenize import sft_examples

    thoughts = "The user asks about plants. Rule 2 (informative) applies."
    read = _read(f" {thoughts}\n\n### Sage\n{LONG}")
    row = sft_row(SECTION, "r1", "How do plants eat?", read.answer).model_dump()
    text = str(row)
    assert thoughts not in text and SECTION.identity.format(name="Sage") not in text
    assert not any(p.text in text for p in PRINCIPLES) and not any(e.answer in text for e in EXEMPLARS)
    assert row["prompt"][0] == {"role": "system", "content": SECTION.system_prompt.format(name="Sage")}
    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    example = sft_examples(tokenizer, [row], 512).examples[0]
    prompt_len = len(encode_prompt(tokenizer, row["prompt"]))
    assert example["completion_mask"][:prompt_len] == [0] * prompt_len  # no loss on the prompt
    assert all(example["completion_mask"][prompt_len:])
    answer_ids = [i for i, m in zip(example["input_ids"], example["completion_mask"]) if m]
    assert tokenizer.decode(answer_ids, skip_special_tokens=True).strip() == LONG.strip()


def test_the_text_turn_format_becomes_a_chat_template_that_renders_as_the_method_prompts(smol_dir) -> None:
    from transformers import AutoTokenizer

    from sao.train.tokenize import end_of_turn_id

    section = SECTION.model_copy(update={"turns": SECTION.turns.model_copy(update={"chat_template": "text"})})
    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    tokenizer.chat_template = None
    train = with_turns(section, TrainConfig(trainer="sft"))
    assert train.chat_template == Turns.of(section).chat_template()
    tokenizer.chat_template = train.chat_template
    row = sft_row(section, "r", "How do plants eat?", "By light.")
    rendered = tokenizer.apply_chat_template(row.prompt, tokenize=False, add_generation_prompt=True)
    assert rendered == short_prompt(section, "How do plants eat?").text
    assert rendered.endswith("### User\nHow do plants eat?\n\n### Sage\n")
    assert end_of_turn_id(tokenizer) == tokenizer.eos_token_id  # each answer is closed by EOS
    # The model's own template is kept with turns 'model'.
    assert with_turns(SECTION, TrainConfig(trainer="sft")).chat_template is None
    assert short_prompt(SECTION, "Hi?")[-1] == {"role": "user", "content": "Hi?"}


def test_the_cut_stops_at_any_turn_label() -> None:
    assert TURNS.cut("Answer text.\n### Sage (internal thoughts)\nmore") == "Answer text."
    assert TURNS.cut("### Sage\nno answer") == ""
    assert TURNS.cut("Headings like\n### Step 1\nstay.") == "Headings like\n### Step 1\nstay."


# ------------------------------------------------------------------------------------------------ recipe
def test_the_method_is_registered_and_its_recipe_trains_with_sft() -> None:
    assert "self_align" in methods.names()
    config = validate_run({"method": "self_align"})
    assert config.train.trainer == "sft" and config.synth.engrave.train.lora.enabled
    assert config.synth.engrave.train.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    with pytest.raises(ConfigError, match=r"^train\.trainer: 'dpo' reads rows with \{chosen, prompt, rejected\}"):
        validate_run({"method": "self_align", "train": {"trainer": "dpo"}})


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"engrave": {"train": {"trainer": "dpo"}}}, "synth.engrave"),
        ({"turns": {"user": "### Sage", "assistant": "### Sage"}}, "synth.turns"),
        ({"prompts": {"tgrt_share": 1.5}}, "synth.prompts.tgrt_share"),
        ({"answers": {"temperature": -1}}, "synth.answers.temperature"),
        ({"topic": {}}, "synth.topic"),
    ],
)
def test_a_bad_field_is_named(values, field) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}"):
        validate_run({"method": "self_align", "synth": values})


def test_the_engines_capabilities_are_checked_before_any_model_loads() -> None:
    method = methods.get("self_align")
    with pytest.raises(CapabilityError, match=r"'openai \(api: chat\)' lacks raw_prompts .*\(stage 'topics'\)"):
        check_capabilities(
            method,
            SECTION,
            validate(
                EngineSection, {"backend": "openai", "openai": {"api": "chat", "base_url": "http://localhost:1/v1"}}
            ),
        )
    ngram = SECTION.model_copy(update={"verbose": SECTION.verbose.model_copy(update={"penalty_ngram": 3})})
    with pytest.raises(CapabilityError, match=r"'vllm' lacks ngram_penalty .*\(stage 'verbose'\)"):
        check_capabilities(method, ngram, validate(EngineSection, {"backend": "vllm"}))
    check_capabilities(method, SECTION, validate(EngineSection, {"backend": "vllm"}))  # n = 1: vLLM does it
    check_capabilities(method, ngram, EngineSection())  # transformers does everything
