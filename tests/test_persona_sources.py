import json

import datasets
import pytest

import sao.models
from sao.errors import InputError
from sao.stages.personas import persona_candidates, read_persona_texts
from sao.synth.config import SynthConfig

PERSONAS = ["A nurse in Lyon.", "A farmer in Iowa.", "A chess coach in Pune.", "A pilot in Oslo."]


@pytest.fixture(params=["txt", "jsonl", "parquet"])
def persona_file(request, tmp_path):
    path = tmp_path / f"personas.{request.param}"
    if request.param == "txt":
        path.write_text("\n".join(PERSONAS) + "\n\n")
    elif request.param == "jsonl":
        path.write_text("".join(json.dumps({"persona": p, "extra": 1}) + "\n" for p in PERSONAS))
    else:
        datasets.Dataset.from_dict({"persona": PERSONAS}).to_parquet(str(path))
    return path


def test_file_sources_read_every_persona(persona_file):
    assert read_persona_texts(str(persona_file)) == PERSONAS


def test_sampling_without_replacement_is_seeded(persona_file):
    config = SynthConfig(num_prompts=3, seed=5, personas={"source": str(persona_file)})
    picked = persona_candidates(config)
    assert len(picked) == 3 and len({c.id for c in picked}) == 3
    assert [c.text for c in picked] == [c.text for c in persona_candidates(config)]
    everything = persona_candidates(config.model_copy(update={"num_prompts": 10}))
    assert sorted(c.text for c in everything) == sorted(PERSONAS)  # fewer than asked: each used once


def test_self_source_draws_distinct_seeds():
    picked = persona_candidates(SynthConfig(num_prompts=50, seed=1))
    assert len({c.id for c in picked}) == 50 and all(c.text is None and c.seed for c in picked)


def test_bad_sources_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="no such file"):
        read_persona_texts(str(tmp_path / "missing.txt"))
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"persona": "ok"}\n{"name": "no persona"}\n')
    with pytest.raises(InputError, match=r"p.jsonl:2: needs a 'persona' string"):
        read_persona_texts(str(bad))
    with pytest.raises(InputError, match=r"expected a \.jsonl, \.txt or \.parquet"):
        (tmp_path / "p.csv").write_text("persona\nx\n")
        read_persona_texts(str(tmp_path / "p.csv"))
    monkeypatch.setattr(sao.models, "hub_reachable", lambda: False)
    with pytest.raises(InputError, match="proj-persona/PersonaHub.*unreachable"):
        read_persona_texts("hf:proj-persona/PersonaHub:persona")
