"""Benchmark the Titans memory and the retrofit: prints tables and writes JSON.

    .venv/bin/python scripts/bench.py --quick --json reports/bench_quick.json     # a few minutes on a CPU
    .venv/bin/python scripts/bench.py --json reports/bench.json                    # the full run
    python scripts/bench.py --device cuda --base llama-3.2-1b --dtype bfloat16     # random weights, published config

Sections (--sections): memory (vs titans-pytorch), training (step overhead vs the base), inference (long
inputs vs full attention), flops. Every comparison is a ratio measured in this run on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from titans_adapter import TitansConfig
from titans_adapter import benchmark as bm
from titans_adapter.flops import base_flops_from_config

SECTIONS = ("memory", "training", "inference", "flops")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few minutes on a CPU: small grid, short inputs")
    parser.add_argument("--json", type=Path, help="write all results to this JSON file")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument(
        "--base",
        default="default",
        help=f"'default' (embedded SmolLM2-135M), a random-weight architecture ({', '.join(bm.ARCHITECTURES)}), "
        "or a JSON file of LlamaConfig fields (random weights)",
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="dtype of the base model")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--repeats", type=int, default=0, help="timed repeats per measurement (0: 3, or 2 with --quick)")
    parser.add_argument(
        "--memory-grid", choices=["quick", "full", "gpu"], help="memory cases (default: quick with --quick, else full)"
    )
    parser.add_argument(
        "--memory-case",
        action="append",
        default=[],
        metavar="DIM,HEADS,HEAD_DIM,CHUNK,SEQ,BATCH",
        help="a memory case to measure in both refresh modes (repeatable; replaces --memory-grid)",
    )
    parser.add_argument(
        "--memory-budget-s", type=float, default=0, help="stop starting memory cases after this many seconds (0: no limit)"
    )
    parser.add_argument("--layers", default="", help="memory layers for one-layer and three-layer steps, e.g. '8;8,16,24'")
    parser.add_argument(
        "--window", type=int, default=0, help="window of the training step and inference (0: 256 quick, 512 full)"
    )
    parser.add_argument("--windows", type=int, default=2, help="windows per training step")
    parser.add_argument("--batch", type=int, default=1, help="batch of the training step")
    parser.add_argument("--chunk", type=int, default=64, help="memory chunk in the training/inference sections")
    parser.add_argument("--heads", type=int, default=4, help="memory heads in the training/inference sections")
    parser.add_argument("--head-dim", type=int, default=64, help="memory head dim in the training/inference sections")
    parser.add_argument(
        "--refresh-every", type=int, default=1, help="memory refresh_every in the training/inference sections (1: every chunk)"
    )
    parser.add_argument(
        "--compile",
        default="none",
        help=f"comma-separated torch.compile modes of our memory (memory and training sections), a row each (of {', '.join(bm.COMPILE_MODES)})",
    )
    parser.add_argument("--lengths", default="", help="comma-separated inference lengths (default: 4k..16k quick, 4k..256k full)")
    parser.add_argument(
        "--max-base-length", type=int, default=0, help="longest input for the full-attention base (0: native context)"
    )
    parser.add_argument(
        "--base-piece", type=int, default=0, help="piece size of the full-attention base in inference (0: the window)"
    )
    parser.add_argument(
        "--quant4", action="store_true", help="quantize the base's decoder linears to NF4 with bitsandbytes (CUDA)"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip titans-pytorch in the memory section")
    args = parser.parse_args(argv)
    bad_modes = set(args.compile.split(",")) - set(bm.COMPILE_MODES)
    if bad_modes:
        parser.error(f"unknown --compile modes {sorted(bad_modes)}; choose from {', '.join(bm.COMPILE_MODES)}")
    bad = set(args.sections.split(",")) - set(SECTIONS)
    if bad:
        parser.error(f"unknown sections {sorted(bad)}; choose from {', '.join(SECTIONS)}")
    if args.base != "default" and args.base not in bm.ARCHITECTURES and not Path(args.base).is_file():
        parser.error(f"--base must be 'default', one of {', '.join(bm.ARCHITECTURES)} or a JSON file, got {args.base!r}")
    for text in args.memory_case:
        parts = text.split(",")
        if len(parts) != 6 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            parser.error(f"--memory-case takes six positive integers DIM,HEADS,HEAD_DIM,CHUNK,SEQ,BATCH, got {text!r}")
    return args


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}
    info["cpu"] = platform.processor() or platform.machine()
    info["cpu_count"] = os.cpu_count()
    info["torch_threads"] = torch.get_num_threads()
    info["load_average_at_start"] = os.getloadavg()  # other processes' load skews CPU timings; ratios less so
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_base(args: argparse.Namespace, device: torch.device):
    dtype = getattr(torch, args.dtype)
    if args.base == "default":
        from titans_adapter import load_base_model

        base, _ = load_base_model("default", dtype=dtype, device=str(device))
        return base
    arch = args.base if args.base in bm.ARCHITECTURES else json.loads(Path(args.base).read_text())
    base = bm.random_base(arch, device, dtype)
    return bm.quantize_4bit(base) if args.quant4 else base


def default_layers(num_layers: int) -> list[list[int]]:
    """One memory layer at ~8/30 of the depth (layer 8 of SmolLM2's 30), and three spread above it."""
    low = max(0, round(num_layers * 8 / 30))
    three = sorted({low, low + (num_layers - low) // 3, low + 2 * (num_layers - low) // 3})
    return [[low], three]


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    print(f"\n## {title}")
    if not rows:
        print("(nothing measured)")
        return
    cells = [[format_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print(" | ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("-|-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def write_json(path: Path, results: dict[str, Any]) -> None:
    """Write via a temp file + rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    )
    sections = args.sections.split(",")
    repeats = args.repeats or (2 if args.quick else 3)
    results: dict[str, Any] = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}
    results["machine"] = machine_info(device)
    started = time.perf_counter()
    size = 4096 if device.type == "cuda" else 2048
    peak = bm.matmul_peak_flops(device, torch.float32, size)
    results["matmul_peak_gflop_s"] = peak / 1e9
    print(f"device {device}; measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    # The base runs in its own dtype: its achieved fraction is against that dtype's peak.
    base_peak = peak if args.dtype == "float32" else bm.matmul_peak_flops(device, getattr(torch, args.dtype), size)
    results["matmul_peak_base_dtype_gflop_s"] = base_peak / 1e9

    if "memory" in sections:
        grid = bm.memory_grid(quick=(args.memory_grid or ("quick" if args.quick else "full")) == "quick")
        if args.memory_grid == "gpu":
            grid = [c for c in bm.memory_grid(quick=False) if c.seq == 8192 and (c.dim, c.heads) in ((576, 4), (2048, 8))]
            # Most informative first, so that a --memory-budget-s cut leaves a spread of configurations.
            grid.sort(key=lambda c: (c.batch, c.refresh != "every_chunk", -c.chunk, c.dim))
        if args.memory_case:
            values = [tuple(int(v) for v in text.split(",")) for text in args.memory_case]
            grid = [bm.MemoryCase(*v, refresh=r) for r in bm.REFRESH_MODES for v in values]
        rows, skipped, t0 = [], [], time.perf_counter()
        for mode in args.compile.split(","):
            for case in grid:
                if args.memory_budget_s and time.perf_counter() - t0 > args.memory_budget_s:
                    skipped.append(f"{case.name}_{mode}")
                    continue
                row = bm.bench_memory_case(case, device, repeats, with_reference=not args.no_reference, compile_mode=mode)
                row["achieved_fraction_of_peak"] = row["ours_gflop_s"] * 1e9 / peak
                rows.append(row)
                ratio = row.get("ratio_vs_titans_pytorch", float("nan"))
                ceiling = row.get("ratio_ceiling", float("nan"))
                print(
                    f"  {case.name} (compile {mode}): ours {row['ours_tok_s']:,.0f} tok/s, ratio {ratio:.2f}"
                    f" (ceiling {ceiling:.2f})",
                    flush=True,
                )
        results["memory"] = {"cases": rows, "skipped_over_budget": skipped}
        print_table(
            "memory alone, forward+backward (ratio = our tokens/s / titans-pytorch tokens/s)",
            rows,
            [
                "dim",
                "heads",
                "head_dim",
                "chunk",
                "seq",
                "batch",
                "refresh",
                "compile",
                "ours_tok_s",
                "titans_pytorch_tok_s",
                "ratio_vs_titans_pytorch",
                "ratio_ceiling",
                "achieved_fraction_of_peak",
            ],
        )

    needs_base = any(s in sections for s in ("training", "inference", "flops"))
    base = load_base(args, device) if needs_base else None
    window = args.window or (256 if args.quick else 512)
    layer_sets = [[int(i) for i in part.split(",")] for part in args.layers.split(";")] if args.layers else None
    mem_kwargs = dict(chunk_size=args.chunk, num_heads=args.heads, head_dim=args.head_dim, refresh_every=args.refresh_every)

    if "training" in sections:
        layer_sets = layer_sets or default_layers(base.config.num_hidden_layers)
        rows = []
        for mode in args.compile.split(","):
            for layers in layer_sets:
                try:
                    row = bm.bench_training_step(
                        base, layers, window, args.windows, args.batch, device, repeats, compile_mode=mode, **mem_kwargs
                    )
                except Exception as error:  # a compile mode that fails here is a result too; the others still run
                    if mode == "none":
                        raise
                    row = {"layers": layers, "compile": mode, "error": f"{type(error).__name__}: {error}"[:500]}
                    print(f"  layers {layers}, compile {mode}: failed, {row['error']}", flush=True)
                else:
                    print(f"  layers {layers}, compile {mode}: overhead {row['training_overhead']:.3f}", flush=True)
                rows.append(row)
        results["training"] = rows
        print_table(
            "training step, forward+backward, loss on every token (overhead = retrofit / base windowed alike)",
            rows,
            [
                "layers",
                "compile",
                "window",
                "windows",
                "batch",
                "first_step_s",
                "retrofit_step_s",
                "base_step_s",
                "training_overhead",
                "overhead_per_memory_layer",
            ],
        )

    if "inference" in sections:
        lengths = (
            [int(n) for n in args.lengths.split(",")]
            if args.lengths
            else ([4096, 8192, 16384] if args.quick else [4096 * 2**i for i in range(7)])
        )
        native = args.max_base_length or base.config.max_position_embeddings
        config = TitansConfig(
            layers=(layer_sets or default_layers(base.config.num_hidden_layers))[0], window=window, **mem_kwargs
        )
        rows = bm.bench_inference(
            base, config, lengths, device, native_context=native, base_piece=args.base_piece or None, repeats=repeats
        )
        retro = [r for r in rows if r["model"] == "retrofit"]
        results["inference"] = {
            "rows": rows,
            "retrofit_peak_memory_flatness": bm.flatness(retro, "peak_mb"),
            "retrofit_tok_s_flatness": bm.flatness(retro, "tok_s"),
            "memory_unit": "peak RSS (MB)" if device.type == "cpu" else "peak allocated CUDA memory (MB)",
        }
        print_table(
            f"inference: reading N tokens (no logits), in window-sized pieces; fastest of {repeats} reads",
            rows,
            ["model", "tokens", "tok_s", "peak_mb", "above_start_mb", "seconds"],
        )
        print(
            f"retrofit max/min over lengths: peak memory {results['inference']['retrofit_peak_memory_flatness']:.3f}, tokens/s {results['inference']['retrofit_tok_s_flatness']:.3f}"
        )

    if "flops" in sections:
        config = TitansConfig(layers=[0], window=window, **mem_kwargs)
        report = bm.flops_report(base.config, config, context=window / 2)
        training = [row for row in results.get("training", []) if "error" not in row]
        if training:
            # One training step per token: the base forward, the backward (input gradients only, ~1x forward)
            # from the lowest memory layer up, and each memory's forward+backward.
            for row in training:
                per_layer = base_flops_from_config(base.config, window / 2, with_lm_head=False) / base.config.num_hidden_layers
                head = base_flops_from_config(base.config, window / 2) - per_layer * base.config.num_hidden_layers
                above = base.config.num_hidden_layers - min(row["layers"])
                step = (
                    report["base_forward"]
                    + above * per_layer
                    + head
                    + len(row["layers"]) * report["memory_per_layer"]["forward_backward"]
                )
                row["step_flops_per_token"] = step
                row["achieved_fraction_of_peak"] = step * row["retrofit_tok_s"] / base_peak
        results["flops"] = report
        mem = report["memory_per_layer"]
        print("\n## FLOPs per token (analytical, matmuls only)")
        for key, value in mem.items():
            print(f"memory {key:17s} {value / 1e6:10.3f} MFLOP")
        print(f"base forward          {report['base_forward'] / 1e6:10.3f} MFLOP (mean context {window / 2:.0f})")
        print(f"base forward+backward {report['base_forward_backward'] / 1e6:10.3f} MFLOP")
        print(f"memory fwd+bwd / base fwd+bwd: {report['memory_fwd_bwd_over_base_fwd_bwd']:.4f} per memory layer")
        for row in training:
            print(
                f"training step, layers {row['layers']}, compile {row['compile']}: {row['achieved_fraction_of_peak']:.3f} of the measured {args.dtype} matmul peak"
            )

    results["seconds"] = time.perf_counter() - started
    if args.json:
        write_json(args.json, results)
        print(f"\nwrote {args.json}")
    return results


if __name__ == "__main__":
    main()
