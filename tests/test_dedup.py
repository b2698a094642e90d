import pytest

from sao.dedup import NearDuplicateIndex, distinct_n, first_duplicates, jaccard, normalize, repetition_rate, word_ngrams


def test_normalize_ignores_case_punctuation_and_spacing():
    assert normalize("  Hello,   WORLD!! ") == "hello world"
    assert normalize("naïve café") == "naïve café"


def test_word_ngrams_and_jaccard():
    assert word_ngrams("a b c d") == {"a b c", "b c d"}
    assert word_ngrams("hi there") == {"hi there"}
    assert word_ngrams("") == set()
    assert jaccard({"x", "y"}, {"y", "z"}) == pytest.approx(1 / 3)


def test_exact_near_and_distinct_prompts():
    texts = [
        "How do I bake sourdough bread at home with a cast iron pot?",
        "how do I bake sourdough bread at home with a cast-iron pot",  # exact after normalisation
        "How do I bake sourdough bread at home with a cast iron pot? Thanks!",  # near: Jaccard 10/11
        "Explain the difference between TCP and UDP for a networking exam.",
        "What should I plant in a shady vegetable garden in April?",
    ]
    assert first_duplicates(texts) == [None, 0, 0, None, None]
    assert repetition_rate(texts) == pytest.approx(2 / 5)
    assert repetition_rate([]) == 0.0


def test_threshold_decides_near_duplicates():
    a = "please write a short poem about the quiet sea at night under the stars"
    b = "please write a short poem about the quiet sea at night under the moon"
    assert jaccard(word_ngrams(a), word_ngrams(b)) == pytest.approx(11 / 13)
    assert first_duplicates([a, b], threshold=0.7) == [None, 0]
    assert first_duplicates([a, b], threshold=0.9) == [None, None]


def test_index_returns_the_earliest_key_for_exact_repeats():
    index = NearDuplicateIndex()
    index.add("p1", "Same text here please")
    index.add("p2", "Same text here please")
    assert index.match("same TEXT here, please") == "p1"
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateIndex(threshold=0)


def test_matches_do_not_depend_on_the_hash_seed():
    """The earliest match wins whatever order LSH returns candidates in (PYTHONHASHSEED varies)."""
    import subprocess
    import sys

    code = (
        "from sao.dedup import first_duplicates;"
        "print(first_duplicates(['how do I bake bread at home with a pot today',"
        " 'how do I bake bread at home with a pot today please',"
        " 'how do I bake bread at home with a pot today please thanks']))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONHASHSEED": str(seed)}
        ).stdout
        for seed in range(6)
    }
    assert outputs == {"[None, 0, 0]\n"}


def test_distinct_n():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b", "a b"], 2) == pytest.approx(1 / 2)
    assert distinct_n(["a"], 2) == 0.0
