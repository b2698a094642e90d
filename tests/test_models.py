import shutil

import pytest
import torch

from sao.errors import ModelLoadError
from sao.models import load_model, model_fingerprint, pick_dtype, resolve_model_path


def test_local_paths_that_do_not_exist_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="unknown model"):
        resolve_model_path(str(tmp_path / "nope"))


def test_hub_ids_pass_through_to_from_pretrained():
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_dtype_names():
    assert pick_dtype("float32", torch.device("cpu")) == torch.float32
    assert pick_dtype("auto", torch.device("cpu")) in (torch.float32, torch.bfloat16)
    with pytest.raises(ModelLoadError, match="^dtype:"):
        pick_dtype("fp7", torch.device("cpu"))


def test_fingerprint_follows_the_weights(tmp_path, tiny_model_dir):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert model_fingerprint(str(copy)) == model_fingerprint(str(tiny_model_dir))
    loaded = load_model(str(copy), dtype="float32")
    with torch.no_grad():
        loaded.model.model.norm.weight.add_(1.0)
    loaded.model.save_pretrained(copy)
    assert model_fingerprint(str(copy)) != model_fingerprint(str(tiny_model_dir))


def test_local_directory_loads_a_trainable_model(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), dtype="float32")
    assert loaded.path == str(tiny_model_dir)
    assert loaded.fingerprint.startswith("sha256:")
    loaded.model.train()
    ids = torch.tensor([[1, 2, 3, 4]])
    loss = loaded.model(ids, labels=ids).loss
    loss.backward()
    assert loaded.model.model.embed_tokens.weight.grad is not None
