"""Write a trained Llama-architecture model as a GGUF file, so the llama.cpp engine can run it.

A SAO iteration trains a transformers model; the next iteration generates and judges with
it. With ``engine.backend: llamacpp`` that needs GGUF weights. llama.cpp's own converter
(``convert_hf_to_gguf.py``) ships with llama.cpp's sources, not with any installable
package, so this module does the part sao needs with the ``gguf`` library: the tokenizer
and every other metadata field are copied from the GGUF the run started from (training
does not change them), the architecture numbers come from the model's config, and the
weights are written in float16 or Q8_0 (norms in float32), or float32 for exact comparisons.

Only the Llama architecture (SmolLM2, Llama 2/3, Mistral-style configs without sliding
windows) is supported; others get a clear error naming it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sao.errors import ModelLoadError

log = logging.getLogger(__name__)

WeightType = Literal["f16", "bf16", "q8_0", "f32"]
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}  # llama.cpp's enum llama_ftype (general.file_type)
TRAINED_GGUF = "model.gguf"  # written into a trained model's directory; the llama.cpp engine looks for it there
ARCHITECTURES = ("LlamaForCausalLM",)


def _permute_for_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """HF stores q/k rows per head as two rotary halves; GGUF interleaves them (convert_hf_to_gguf's ``permute``)."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def _rope_theta(config: Any) -> float:
    """transformers 5 keeps it in ``rope_parameters``; older configs have ``rope_theta``."""
    parameters = getattr(config, "rope_parameters", None) or {}
    if parameters.get("rope_type", "default") != "default":
        raise ModelLoadError(f"GGUF export: rope scaling '{parameters['rope_type']}' is not supported")
    return float(parameters.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def _architecture_fields(config: Any) -> dict[str, tuple[Any, Any]]:
    """The llama.* metadata that training or a new model may change, from the HF config."""
    import gguf

    head_dim = config.hidden_size // config.num_attention_heads
    t = gguf.GGUFValueType
    return {
        "llama.block_count": (config.num_hidden_layers, t.UINT32),
        "llama.context_length": (config.max_position_embeddings, t.UINT32),
        "llama.embedding_length": (config.hidden_size, t.UINT32),
        "llama.feed_forward_length": (config.intermediate_size, t.UINT32),
        "llama.attention.head_count": (config.num_attention_heads, t.UINT32),
        "llama.attention.head_count_kv": (config.num_key_value_heads, t.UINT32),
        "llama.attention.layer_norm_rms_epsilon": (config.rms_norm_eps, t.FLOAT32),
        "llama.rope.freq_base": (_rope_theta(config), t.FLOAT32),
        "llama.rope.dimension_count": (head_dim, t.UINT32),
        "llama.vocab_size": (config.vocab_size, t.UINT32),
    }


def _tensors(model: Any, weight_type: WeightType) -> list[tuple[str, np.ndarray, Any]]:
    """(GGUF name, data, type) for every weight; tied output weights are written once, as llama.cpp expects."""
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    out = []
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ModelLoadError(f"GGUF export: no GGUF name for tensor '{hf_name}'")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute_for_rope(data, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute_for_rope(data, config.num_key_value_heads)
        # 1-D tensors (norms) stay float32, as llama.cpp's converter keeps them; Q8_0 packs
        # 32 values per block along rows.
        if data.ndim == 2 and weight_type == "f16":
            out.append((name, data.astype(np.float16), gguf.GGMLQuantizationType.F16))
        elif data.ndim == 2 and weight_type == "bf16":
            bf16 = gguf.GGMLQuantizationType.BF16
            out.append((name, gguf.quants.quantize(data, bf16), bf16))
        elif data.ndim == 2 and weight_type == "q8_0" and data.shape[1] % 32 == 0:
            q8 = gguf.GGMLQuantizationType.Q8_0
            out.append((name, gguf.quants.quantize(data, q8), q8))
        else:
            out.append((name, data, gguf.GGMLQuantizationType.F32))
    return out


def export_gguf(model: Any, source_gguf: Path, dest: Path, *, weight_type: WeightType = "f16") -> Path:
    """Write ``model`` (a loaded transformers Llama) to ``dest``, with ``source_gguf``'s tokenizer and metadata.

    Written to a temporary sibling and renamed into place, so a killed export never leaves
    a truncated file that a later run would load.
    """
    import gguf

    architecture = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
    if architecture not in ARCHITECTURES:
        raise ModelLoadError(f"GGUF export supports {', '.join(ARCHITECTURES)}, not {architecture}")
    reader = gguf.GGUFReader(source_gguf)
    if reader.fields[gguf.Keys.General.ARCHITECTURE].contents() != "llama":
        raise ModelLoadError(f"GGUF export: {source_gguf} is not a llama-architecture GGUF")
    replaced = _architecture_fields(model.config)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}-", dir=dest.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp_name, "llama")
        for field in reader.fields.values():
            # The writer adds the architecture itself; GGUF.* are the reader's virtual fields.
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue
            if field.name in (gguf.Keys.General.FILE_TYPE, gguf.Keys.General.QUANTIZATION_VERSION):
                continue  # describe the source's weights, not these (written below)
            if field.name in replaced:
                continue
            value_type = field.types[0]
            sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
        for key, (value, value_type) in replaced.items():
            writer.add_key_value(key, value, value_type)
        # The type of these weights: without it the llama.cpp engine cannot tell that the file already
        # is in the type it runs (`runnable_gguf`), and would convert a copy of it on first use.
        writer.add_file_type(FILE_TYPES[weight_type])
        for name, data, tensor_type in _tensors(model, weight_type):
            writer.add_tensor(name, data, raw_dtype=tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    log.info("wrote %s (%s weights)", dest, weight_type)
    return dest


def ensure_gguf(model_dir: Path, source_gguf: Path, weight_type: WeightType = "f16") -> Path:
    """``model_dir/model.gguf``, exported from the directory's HF weights on first use."""
    from transformers import AutoModelForCausalLM

    dest = model_dir / TRAINED_GGUF
    if not dest.is_file():
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        export_gguf(model, source_gguf, dest, weight_type=weight_type)
    return dest
