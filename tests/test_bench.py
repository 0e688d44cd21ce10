"""Smoke tests of the benchmark (scripts/bench.py and titans_adapter.benchmark) on tiny configurations."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config, tiny_llama

from titans_adapter import TitansConfig, retrofit
from titans_adapter import benchmark as bm
from titans_adapter.flops import base_flops_from_config, memory_flops

ROOT = Path(__file__).resolve().parents[1]
TINY_BASE = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
HAS_REFERENCE = importlib.util.find_spec("titans_pytorch") is not None


def load_script():
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_script"] = module
    spec.loader.exec_module(module)
    return module


def test_bench_script_writes_every_section(tmp_path):
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY_BASE))
    out = tmp_path / "bench.json"
    args = ["--quick", "--threads", "1", "--repeats", "1", "--base", str(config_file), "--memory-case", "32,2,16,8,64,1"]
    args += ["--layers", "0;0,1", "--window", "32", "--chunk", "8", "--heads", "2", "--head-dim", "16", "--lengths", "64,128"]
    args += ["--json", str(out)]
    load_script().main(args)
    results = json.loads(out.read_text())
    cases = results["memory"]["cases"]
    assert [c["refresh"] for c in cases] == ["every_chunk", "per_call"]
    for case in cases:
        assert case["ours_tok_s"] > 0
        if HAS_REFERENCE:
            assert case["ratio_vs_titans_pytorch"] == pytest.approx(case["ours_tok_s"] / case["titans_pytorch_tok_s"])
        else:
            assert "titans_pytorch_skipped" in case
    assert [row["layers"] for row in results["training"]] == [[0], [0, 1]]
    assert all(row["training_overhead"] > 0 for row in results["training"])
    rows = results["inference"]["rows"]
    # The retrofit reads every length; the full-attention base only up to its native context (64 here).
    assert [(r["model"], r["tokens"]) for r in rows] == [("retrofit", 64), ("retrofit", 128), ("base_full_attention", 64)]
    assert results["flops"]["memory_per_layer"]["forward_backward"] > 0
    assert results["matmul_peak_gflop_s"] > 0


def test_bench_script_rejects_bad_arguments(tmp_path):
    script = load_script()
    with pytest.raises(SystemExit):
        script.parse_args(["--sections", "memory,speed"])
    with pytest.raises(SystemExit):
        script.parse_args(["--memory-case", "32,2,16"])
    with pytest.raises(SystemExit):
        script.parse_args(["--base", str(tmp_path / "missing.json")])


def test_reference_baseline_swaps_memory_out_and_back():
    model = retrofit(tiny_llama(), tiny_config(layers=[0, 1]))
    originals = dict(model.memories.items())
    saved = bm.without_memory(model)
    assert all(isinstance(m, bm.BiasBranch) for m in model.memories.values())
    bm.restore_memory(model, saved)
    assert dict(model.memories.items()) == originals


def test_memory_flops_count_the_mlp_matmuls():
    config = TitansConfig(layers=[0], window=64, chunk_size=64, num_heads=4, head_dim=64, memory_depth=2, memory_expansion=2)
    flops = memory_flops(576, config)
    mlp = 2 * 64 * 128 + 2 * 128 * 64  # per token and head
    assert flops.retrieve == 4 * mlp
    # write: forward on keys + weight gradients of both layers + error through the second layer + recurrence
    assert flops.write == pytest.approx(4 * (mlp + mlp + 2 * 128 * 64 + 4 * (64 * 128 * 2) / 64))
    assert flops.forward_backward == 3 * flops.forward
    base = tiny_llama().config
    assert base_flops_from_config(base, context=10) > base_flops_from_config(base, context=1)


def test_random_base_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="Unknown architecture"):
        bm.random_base("gpt-17", torch.device("cpu"), torch.float32)


def test_measure_read_reports_the_fastest_of_its_repeats(monkeypatch):
    clock = iter([0.0, 3.0, 10.0, 12.0, 20.0, 24.0])  # three reads of 3 s, 2 s and 4 s
    monkeypatch.setattr(bm.time, "perf_counter", lambda: next(clock))
    calls = []
    row = bm.measure_read("retrofit", calls.append, torch.zeros(1, 100), torch.device("cpu"), repeats=3)
    assert len(calls) == 3
    assert row["seconds"] == 2.0 and row["tok_s"] == 50.0 and row["seconds_all"] == [3.0, 2.0, 4.0]


def test_measure_read_takes_the_peak_when_the_block_has_exited(monkeypatch):
    class PeakAtExit:  # as on CUDA: the peak is only known when the block exits
        def __init__(self, device):
            self.peak_mb = self.above_start_mb = self.peak_reserved = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.peak_mb, self.above_start_mb, self.peak_reserved = 500.0, 20.0, 2**30

    monkeypatch.setattr(bm, "PeakMemory", PeakAtExit)
    row = bm.measure_read("retrofit", lambda ids: None, torch.zeros(1, 8), torch.device("cpu"), repeats=2)
    assert row["peak_mb"] == 500.0 and row["above_start_mb"] == 20.0 and row["peak_reserved_mb"] == 1024.0
    assert bm.flatness([{"peak_mb": 4.0}, {"peak_mb": 5.0}], "peak_mb") == 1.25
    assert math.isnan(bm.flatness([{"peak_mb": 0.0}, {"peak_mb": 5.0}], "peak_mb"))  # no division by zero


def test_training_step_rows_name_their_compile_mode(tmp_path):
    base = tiny_llama()
    row = bm.bench_training_step(base, [0], 16, 2, 1, torch.device("cpu"), 1, compile_mode="none", chunk_size=8)
    assert row["compile"] == "none" and row["refresh_every"] == 1 and row["first_step_s"] > 0
    with pytest.raises(ValueError, match="compile_mode"):
        bm.bench_training_step(base, [0], 16, 2, 1, torch.device("cpu"), 1, compile_mode="fast")


def test_memory_case_checks_its_compile_mode():
    case = bm.MemoryCase(32, 2, 16, 8, 64, 1)
    row = bm.bench_memory_case(case, torch.device("cpu"), repeats=1, with_reference=False)
    assert row["compile"] == "none" and row["ours_tok_s"] > 0
    with pytest.raises(ValueError, match="compile_mode"):
        bm.bench_memory_case(case, torch.device("cpu"), repeats=1, with_reference=False, compile_mode="turbo")
    with pytest.raises(ValueError, match="compile mode"):
        bm.MemoryBranch(32, bm.titans_config_for(case)).compile("turbo")


def test_memory_case_bounds_the_ratio_by_the_shared_projections(monkeypatch):
    """ratio_ceiling = the reference's time / the shared projections' time, timed in the same interleaved run."""
    case = bm.MemoryCase(32, 2, 16, 8, 64, 1, refresh="per_call")

    class Reference(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(32, 32)

        def forward(self, x):
            return self.proj(x), None

    calls = []
    monkeypatch.setattr(bm, "titans_pytorch_available", lambda: None)
    monkeypatch.setattr(bm, "titans_pytorch_memory", lambda c: Reference())

    def fake_time_pair(fns, device, repeats):
        for fn in fns:
            fn()
            calls.append(fn.__name__)
        return [1.0, 3.0, 0.5]

    monkeypatch.setattr(bm, "time_pair", fake_time_pair)
    row = bm.bench_memory_case(case, torch.device("cpu"), repeats=1)
    assert calls == ["run_ours", "run_theirs", "run_shared"]
    assert row["ratio_vs_titans_pytorch"] == 3.0 and row["ratio_ceiling"] == 6.0
    assert row["shared_projections_tok_s"] == 64 / 0.5
    shared = bm.SharedProjections(32, 2, 16)
    assert sum(p.numel() for p in shared.parameters()) == 32 + 32 * 96 + 32 * 6 + 6 + 32 * 32
