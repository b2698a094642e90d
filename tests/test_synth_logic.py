"""Pure synthesis logic: templates, marker parsing, seeds, sample filtering, judge decisions, recipes."""

import pytest

from sao.errors import ConfigError
from sao.judge.verdict import Judgement
from sao.recipe import apply_overrides, validate
from sao.stages.judge import decide
from sao.stages.responses import ResponseSample, usable_samples
from sao.synth.config import SynthConfig
from sao.synth.extract import extract_after_marker
from sao.synth.personas import build_persona_prompt, combination_count, decode_seed, sample_seeds
from sao.synth.prompts import NO_PERSONA_TEMPLATE, PAPER_PROMPT_TEMPLATE, PROMPT_TEMPLATE, build_prompt_request


@pytest.mark.parametrize(
    "output, finish, want, reason",
    [
        ("User prompt: How do I fix a leaking tap?", "stop", "How do I fix a leaking tap?", None),
        ('Sure!\nUser Prompt: "Plan a 3-day trip to Kyoto."', "stop", "Plan a 3-day trip to Kyoto.", None),
        ("**User prompt:** Explain TCP.\n\nThis prompt is specific because...", "stop", "Explain TCP.", None),
        ("User prompt: Write a long essay", "length", None, "truncated"),
        ("How do I fix a tap?", "stop", None, "missing_marker"),
        ("User prompt:   \n\n", "stop", None, "empty"),
        ("User prompt: " + "x" * 50, "stop", None, "too_long"),
        ("User prompt: Sarah,\n\nI hope you are well", "stop", None, "too_short"),
    ],
)
def test_extract_after_marker(output, finish, want, reason):
    got = extract_after_marker(output, "User prompt:", max_chars=40, min_words=2, finish_reason=finish)
    assert (got.text, got.drop_reason) == (want, reason)


def test_prompt_templates_carry_the_persona():
    persona = "A retired nurse who loves gardening."
    assert build_prompt_request(persona, PROMPT_TEMPLATE).startswith(persona + "\nWhat would this person ask")
    paper = build_prompt_request(persona, PAPER_PROMPT_TEMPLATE)
    assert "following persona may ask you to do:\n" + persona in paper
    assert "start with 'User prompt:'" in paper
    assert build_prompt_request(None, NO_PERSONA_TEMPLATE) == NO_PERSONA_TEMPLATE


@pytest.mark.parametrize(
    "output, finish, want, reason",
    [
        # The budget cut a later paragraph, not the prompt: keep it.
        ("User prompt: Fix my bike?\n\nAssistant: Sure, first", "length", "Fix my bike?", None),
        ("User prompt: Fix my bike and then", "length", None, "truncated"),
        ("Nina is a nurse. She bakes. She has a", "length", "Nina is a nurse. She bakes.", None),
        ("Nina is a nurse who", "length", None, "truncated"),
        ("Nina is a nurse.", "stop", "Nina is a nurse.", None),
    ],
)
def test_extract_persona_style(output, finish, want, reason):
    persona_style = "Nina" in output
    got = extract_after_marker(
        output,
        "User prompt:",
        max_chars=200,
        finish_reason=finish,
        require_marker=not persona_style,
        trim_truncated=persona_style,
    )
    assert (got.text, got.drop_reason) == (want, reason)


def test_persona_seeds_are_distinct_and_reproducible():
    seeds = sample_seeds(200, seed=3)
    assert len({s.index for s in seeds}) == 200
    assert seeds == sample_seeds(200, seed=3)
    assert seeds != sample_seeds(200, seed=4)
    assert decode_seed(combination_count() - 1).expertise == "a recognised expert"
    text = build_persona_prompt(seeds[0])
    assert seeds[0].occupation in text and seeds[0].interest in text and "Persona:" in text
    with pytest.raises(ValueError, match="num_prompts"):
        sample_seeds(combination_count() + 1, seed=0)


def sample(text, finish="stop"):
    return ResponseSample(text=text, finish_reason=finish, num_tokens=len(text.split()), seed=1)


@pytest.mark.parametrize(
    "samples, usable, reason",
    [
        ([sample("a"), sample("b")], [0, 1], None),
        ([sample("a"), sample("a ")], [0], "identical"),
        ([sample("a"), sample("  ")], [0], "empty"),
        ([sample("a"), sample("b", "length")], [0], "truncated"),
        ([sample("a"), sample("a"), sample("c"), sample("", "stop")], [0, 2], None),
    ],
)
def test_usable_samples(samples, usable, reason):
    assert usable_samples(samples) == (usable, reason)


def judged(pairs):
    return [Judgement(first=a, second=b, p_first=p) for (a, b), p in pairs.items()]


def test_decide_swap_average_keeps_a_debiased_preference():
    cfg = SynthConfig().judge
    row = decide("x", [0, 1], judged({(0, 1): 0.9, (1, 0): 0.3}), cfg)  # p(0 better) = (0.9 + 0.7) / 2
    assert (row.chosen, row.rejected, row.drop_reason) == (0, 1, None)
    assert row.p_chosen == pytest.approx(0.8)
    assert row.comparisons[0].consistent is True
    # Slot 1 wins in both orders, but more strongly for sample 1: average keeps it, agree does not.
    leaning = judged({(0, 1): 0.6, (1, 0): 0.9})  # p(1 better) = (0.4 + 0.9) / 2 = 0.65
    row = decide("x", [0, 1], leaning, cfg)
    assert (row.chosen, row.drop_reason, row.comparisons[0].consistent) == (1, None, False)
    assert row.p_chosen == pytest.approx(0.65)
    strict = decide("x", [0, 1], leaning, cfg.model_copy(update={"swap_rule": "agree"}))
    assert strict.drop_reason == "inconsistent"


def test_decide_drops_a_pure_position_bias_and_parse_failures():
    cfg = SynthConfig().judge
    biased = decide("x", [0, 1], judged({(0, 1): 0.9, (1, 0): 0.9}), cfg)
    assert biased.drop_reason == "below_margin" and biased.p_chosen == pytest.approx(0.5)
    broken = decide("y", [0, 1], judged({(0, 1): None, (1, 0): 1.0}), cfg)
    assert broken.drop_reason == "parse_failure" and broken.chosen is None


def test_decide_round_robin_for_k_3():
    cfg = SynthConfig().judge.model_copy(update={"order": "single"})
    # sample 2 beats both, sample 0 loses to both
    row = decide("z", [0, 1, 2], judged({(0, 1): 0.2, (0, 2): 0.1, (1, 2): 0.3}), cfg)
    assert (row.chosen, row.rejected) == (2, 0)
    assert row.p_chosen == pytest.approx(0.9)


def test_a_self_judge_records_its_settings_as_before_the_judge_could_be_another_model():
    # Pairs rows carry these (generation.judge) and the synth manifest hashes them: SAO's files must not change.
    judge = SynthConfig().judge
    assert judge.model_dump(exclude={"template"}) == {
        "mode": "logprob",
        "order": "swap",
        "swap_rule": "average",
        "margin": 0.01,
        "max_new_tokens": 16,
    }
    assert list(judge.model_dump()) == ["mode", "order", "swap_rule", "margin", "template", "max_new_tokens"]
    named = SynthConfig(judge={"model": "org/judge", "mode": "generate"}).judge
    assert named.model_dump(exclude={"template"}) == {
        "mode": "generate",
        "order": "swap",
        "swap_rule": "average",
        "margin": 0.01,
        "max_new_tokens": 16,
        "model": "org/judge",
        "engine": None,
    }
    assert validate(SynthConfig, SynthConfig(judge=named.model_dump()).model_dump()).judge == named


def test_recipe_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"^judge\.mode:"):
        validate(SynthConfig, apply_overrides({}, ["judge.mode=vibes"]))
    with pytest.raises(ConfigError, match=r"^responses\.temprature:"):
        validate(SynthConfig, {"responses": {"temprature": 1}})
    with pytest.raises(ConfigError, match=r"^prompts\.template:.*\{persona\}"):
        validate(SynthConfig, {"prompts": {"template": "no placeholder"}})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["judge.mode"])
    cfg = validate(SynthConfig, apply_overrides({}, ["judge.margin=0.1", "responses.k=3"]))
    assert (cfg.judge.margin, cfg.responses.k) == (0.1, 3)


def test_recipe_reference_is_up_to_date():
    from pathlib import Path

    from sao.recipe_docs import recipe_reference

    doc = Path(__file__).resolve().parent.parent / "docs" / "recipes.md"
    assert doc.read_text() == recipe_reference(), "run: python -m sao.recipe_docs > docs/recipes.md"
