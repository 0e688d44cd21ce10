"""Adapter save/load round trip and clear errors for bad input."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_config, tiny_llama
from transformers import GPT2Config, GPT2LMHeadModel

from titans_adapter import AdapterError, ConfigError, TitansConfig, UnsupportedModelError, load_adapter, retrofit
from titans_adapter.models import ModelLoadError, load_base_model


def test_save_load_round_trip_gives_identical_outputs(tiny_model, tmp_path):
    ids = torch.randint(0, 128, (1, 90))
    with torch.no_grad():
        expected = tiny_model(ids).logits
    tiny_model.save_adapter(tmp_path / "adapter")
    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    loaded = load_adapter(tiny_llama(), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, expected, rtol=0, atol=0)
    assert loaded.config == tiny_model.config


def test_save_over_an_existing_adapter_replaces_it(tiny_model, tmp_path):
    tiny_model.save_adapter(tmp_path / "a")
    with torch.no_grad():
        tiny_model.memories["0"].gate.fill_(0.5)
    tiny_model.save_adapter(tmp_path / "a")
    loaded = load_adapter(tiny_llama(), tmp_path / "a")
    assert torch.all(loaded.memories["0"].gate == 0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_adapter_for_another_base_is_refused(tiny_model, tmp_path):
    tiny_model.save_adapter(tmp_path / "a")
    with pytest.raises(AdapterError, match="hidden_size: 64 vs 32"):
        load_adapter(tiny_llama(hidden=32), tmp_path / "a")


def test_corrupt_config_is_refused(tiny_model, tmp_path):
    tiny_model.save_adapter(tmp_path / "a")
    (tmp_path / "a" / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="Corrupt"):
        load_adapter(tiny_llama(), tmp_path / "a")


def test_truncated_weights_are_refused(tiny_model, tmp_path):
    tiny_model.save_adapter(tmp_path / "a")
    weights = tmp_path / "a" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(AdapterError, match="Corrupt or truncated"):
        load_adapter(tiny_llama(), tmp_path / "a")


def test_weights_not_matching_config_are_refused(tiny_model, tmp_path):
    tiny_model.save_adapter(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    meta["titans_config"]["head_dim"] = 8
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match="do not match"):
        load_adapter(tiny_llama(), tmp_path / "a")


def test_missing_adapter_dir_is_refused(tmp_path):
    with pytest.raises(AdapterError, match="not an adapter directory"):
        load_adapter(tiny_llama(), tmp_path / "nothing")


def test_unsupported_architecture_names_supported_families():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(UnsupportedModelError, match="llama, mistral, qwen2, qwen3"):
        retrofit(gpt2, tiny_config())


def test_empty_input_is_refused(tiny_model):
    with pytest.raises(ValueError, match="non-empty"):
        tiny_model(torch.zeros(1, 0, dtype=torch.long))


def test_float_input_is_refused(tiny_model):
    with pytest.raises(TypeError, match="integer token ids"):
        tiny_model(torch.zeros(1, 4))


def test_window_smaller_than_chunk_is_refused():
    with pytest.raises(ConfigError, match="smaller than the memory chunk_size"):
        TitansConfig(window=32, chunk_size=64)


def test_two_ways_of_shifting_keys_are_refused():
    with pytest.raises(ConfigError, match="choose one"):
        TitansConfig(transition_keys=True, bigram_keys=True)


def test_unknown_config_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="Did you mean 'chunk_size'"):
        TitansConfig.from_dict({"chunk_sise": 64})


def test_layer_out_of_range_is_refused(tiny_base):
    with pytest.raises(ConfigError, match="2 decoder layers"):
        retrofit(tiny_base, tiny_config(layers=[5]))


def test_retrofitting_twice_is_refused(tiny_base):
    retrofit(tiny_base, tiny_config())
    with pytest.raises(ValueError, match="already retrofitted"):
        retrofit(tiny_base, tiny_config())


def test_mismatched_memory_state_batch_is_refused(tiny_model):
    state = tiny_model(torch.randint(0, 128, (2, 10))).memory_state
    with pytest.raises(ValueError, match="holds 2 streams"):
        tiny_model(torch.randint(0, 128, (1, 10)), memory_state=state)


def test_failed_model_load_says_what_was_tried(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="local directory"):
        load_base_model(str(tmp_path / "empty"))


def test_4bit_without_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelLoadError, match="CUDA GPU"):
        load_base_model("default", load_in_4bit=True)
