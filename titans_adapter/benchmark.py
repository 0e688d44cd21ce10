"""Benchmarks of the memory and of the retrofit, each measured as a ratio within one run on one machine.

1. memory alone, forward+backward tokens/s, against titans-pytorch's NeuralMemory at equal semantics;
2. the end-to-end training step of a retrofitted model against the same frozen base windowed without memory;
3. inference: tokens/s and peak memory reading long inputs, retrofit against the base with full attention;
4. FLOPs per token (titans_adapter.flops) and the achieved fraction of the machine's measured matmul peak.

Timings interleave the two sides of a comparison and keep the median, so that load from other processes
hits both sides alike. titans-pytorch is optional (pip install titans-adapter[bench]).
"""

from __future__ import annotations

import gc
import inspect
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .config import TitansConfig
from .flops import base_flops_from_config, memory_flops
from .memory import LayerMemoryState
from .retrofit import COMPILE_MODES as MEMORY_COMPILE_MODES
from .retrofit import MemoryBranch, retrofit

COMPILE_MODES = ("none", *MEMORY_COMPILE_MODES)  # our memory eager ("none") or through torch.compile


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pair(fns: list[Callable[[], Any]], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Median seconds per call of each function, run interleaved (a, b, a, b, ...) after warmup."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """The machine's measured matmul throughput (FLOP/s) for one big square matmul: the 'peak' we compare to."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    (seconds,) = time_pair([lambda: a @ b], device, repeats)
    return 2 * size**3 / seconds


# ----- 1. the memory alone ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryCase:
    """One configuration of the memory comparison. refresh: 'every_chunk' or 'per_call' (see below)."""

    dim: int
    heads: int
    head_dim: int
    chunk: int
    seq: int
    batch: int
    refresh: str = "every_chunk"

    @property
    def name(self) -> str:
        return f"d{self.dim}_h{self.heads}x{self.head_dim}_c{self.chunk}_T{self.seq}_B{self.batch}_{self.refresh}"


REFRESH_MODES = ("every_chunk", "per_call")


def titans_config_for(case: MemoryCase) -> TitansConfig:
    """Our configuration for a case: 'every_chunk' refreshes the read weights at every chunk (exact);
    'per_call' never within the call (refresh_every = chunks in the call), titans-pytorch's default semantics."""
    refresh = 1 if case.refresh == "every_chunk" else max(1, case.seq // case.chunk)
    return TitansConfig(
        layers=[0],
        window=max(case.chunk, 64),
        chunk_size=case.chunk,
        num_heads=case.heads,
        head_dim=case.head_dim,
        memory_depth=2,
        memory_expansion=2,
        refresh_every=refresh,
    )


def titans_pytorch_memory(case: MemoryCase) -> nn.Module:
    """titans-pytorch's NeuralMemory at the case's configuration (depth-2 MLP, hidden 2 x head_dim).

    batch_size=chunk refreshes its weights after every chunk (our refresh_every=1); batch_size=None, its
    default, takes every chunk's gradient at the call's initial weights (our 'per_call').
    """
    from titans_pytorch import NeuralMemory as ReferenceMemory

    if case.refresh not in REFRESH_MODES:
        raise ValueError(f"refresh must be one of {REFRESH_MODES}, got {case.refresh!r}.")
    return ReferenceMemory(
        dim=case.dim,
        chunk_size=case.chunk,
        batch_size=case.chunk if case.refresh == "every_chunk" else None,
        heads=case.heads,
        dim_head=case.head_dim,
        default_model_kwargs=dict(depth=2, expansion_factor=2.0),
    )


def titans_pytorch_available() -> str | None:
    """None when titans-pytorch imports, else the reason it does not."""
    try:
        import titans_pytorch  # noqa: F401
    except Exception as error:  # an ImportError, or a failure inside its own imports
        return f"{type(error).__name__}: {error}"
    return None


class SharedProjections(nn.Module):
    """The work both memories do around their memory core: a norm, the q/k/v and per-head gate projections
    from dim, and the heads' projection back to dim. Timed beside both sides, it bounds the ratio: if our core
    cost nothing, ours would take this long, so titans-pytorch's time / this time is the highest ratio possible."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.to_gates = nn.Linear(dim, 3 * heads)
        self.out_proj = nn.Linear(heads * head_dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        q, k, v = self.to_qkv(h).chunk(3, dim=-1)  # each (B, T, heads * head_dim)
        return self.out_proj(q + k + v) * self.to_gates(h).sigmoid().mean(-1, keepdim=True)


def bench_memory_case(
    case: MemoryCase, device: torch.device, repeats: int = 3, with_reference: bool = True, compile_mode: str = "none"
) -> dict[str, Any]:
    """Forward+backward tokens/s of our memory and of titans-pytorch's on the same input, and their ratio.

    Ours is the retrofit's whole branch (RMSNorm, projections, memory, output projection back to dim, gate),
    the same work as titans-pytorch's module (pre-norm, projections, memory, retrieve gate, head combination);
    compile_mode other than "none" compiles ours (MemoryBranch.compile; the first call, untimed, compiles).
    With the reference, the projections both sides share (SharedProjections) are timed in the same interleaved
    run: `ratio_ceiling` = titans-pytorch's time / theirs, the ratio a memory core of zero cost would reach.
    """
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}.")
    torch.manual_seed(0)
    ours = MemoryBranch(case.dim, titans_config_for(case)).to(device)
    with torch.no_grad():
        ours.gate.fill_(1.0)  # an open gate, as after training (the zero init would not change the cost)
    if compile_mode != "none":
        torch._dynamo.reset()
        ours.compile(compile_mode)
    x = torch.randn(case.batch, case.seq, case.dim, device=device, requires_grad=True)

    def run_ours() -> None:
        y, _ = ours(x, ours.memory.initial_state(case.batch, device))
        y.sum().backward()

    fns = [run_ours]
    reason = titans_pytorch_available() if with_reference else "not requested"
    if reason is None:
        theirs = titans_pytorch_memory(case).to(device)

        def run_theirs() -> None:
            y, _ = theirs(x)
            y.sum().backward()

        shared = SharedProjections(case.dim, case.heads, case.head_dim).to(device)

        def run_shared() -> None:
            shared(x).sum().backward()

        fns += [run_theirs, run_shared]
    try:
        times = time_pair(fns, device, repeats)
    except torch.OutOfMemoryError:
        if len(fns) == 1:
            raise
        # titans-pytorch keeps per-token gradients (B, H, T, d_in, d_out) and runs out first: time ours alone.
        fns, reason = fns[:1], "out of memory"
        gc.collect()
        torch.cuda.empty_cache()
        times = time_pair(fns, device, repeats)
    tokens = case.batch * case.seq
    flops = memory_flops(case.dim, titans_config_for(case)).forward_backward
    result: dict[str, Any] = {
        **asdict(case),
        "name": case.name,
        "compile": compile_mode,
        "ours_tok_s": tokens / times[0],
        "ours_gflop_s": flops * tokens / times[0] / 1e9,
    }
    if len(times) > 1:
        result["titans_pytorch_tok_s"] = tokens / times[1]
        result["ratio_vs_titans_pytorch"] = times[1] / times[0]
        result["shared_projections_tok_s"] = tokens / times[2]
        result["ratio_ceiling"] = times[1] / times[2]
    else:
        result["titans_pytorch_skipped"] = reason
    return result


def memory_grid(quick: bool) -> list[MemoryCase]:
    """The issue's grid (dim 576/2048, heads 4x64/8x128, chunk 16/64, seq 2k/8k, batch 1/4, both refresh modes),
    or in quick mode its CPU-sized corner: dim 576, 4x64, 2k tokens, batch 1."""
    if quick:
        return [MemoryCase(576, 4, 64, c, 2048, 1, r) for r in REFRESH_MODES for c in (16, 64)]
    cases = []
    for dim in (576, 2048):
        for heads, head_dim in ((4, 64), (8, 128)):
            for chunk in (16, 64):
                for seq in (2048, 8192):
                    for batch in (1, 4):
                        for refresh in REFRESH_MODES:
                            cases.append(MemoryCase(dim, heads, head_dim, chunk, seq, batch, refresh))
    return cases


# ----- 2. the end-to-end training step -----------------------------------------------------------------
class BiasBranch(nn.Module):
    """Stands in for a memory branch in the base reference: adds a trainable zero vector, nothing else.

    It gives the backward pass something to differentiate at the same layer, so the reference runs the same
    windows, the same cache machinery and the same backward extent as the retrofit, minus the memory.
    """

    def __init__(self, hidden: int, device: torch.device) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(hidden, device=device))

    def forward(self, hidden: Tensor, state: LayerMemoryState) -> tuple[Tensor, LayerMemoryState]:
        return hidden + self.bias.to(hidden.dtype), state


def without_memory(model: nn.Module) -> dict[str, nn.Module]:
    """Swap every memory branch of a TitansModel for a BiasBranch; returns the originals for restore_memory."""
    saved = dict(model.memories.items())
    hidden = model.base.config.hidden_size
    for name in saved:
        model.memories[name] = BiasBranch(hidden, model.device)
    return saved


def restore_memory(model: nn.Module, saved: dict[str, nn.Module]) -> None:
    for name, module in saved.items():
        model.memories[name] = module


def bench_training_step(
    base: nn.Module,
    layers: list[int],
    window: int,
    windows: int,
    batch: int,
    device: torch.device,
    repeats: int = 3,
    compile_mode: str = "none",
    **config: Any,
) -> dict[str, Any]:
    """Forward+backward seconds of one training step (loss on every token), retrofit vs the base reference.

    The reference is the same TitansModel with its memory branches swapped for BiasBranch: the frozen base,
    windowed alike, differentiated from the same layers. training_overhead = retrofit time / reference time.
    compile_mode: "none" (eager), or a torch.compile mode for the memory branches (TitansModel.compile_memory):
    "default", "reduce-overhead" (CUDA graphs), "max-autotune-no-cudagraphs"; the base stays eager on both sides.
    """
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}.")
    cfg = TitansConfig(layers=layers, window=window, **config)
    model = retrofit(base, cfg)
    if compile_mode != "none":
        torch._dynamo.reset()
        model.compile_memory(compile_mode)
    try:
        vocab = base.config.vocab_size
        torch.manual_seed(0)
        ids = torch.randint(0, vocab, (batch, window * windows), device=device)

        def step() -> None:
            out = model(ids, labels=ids, memory_state=model.init_memory_state(batch), return_logits=False)
            out.loss.backward()
            model.zero_grad(set_to_none=True)

        def reference_step() -> None:
            state = model.init_memory_state(batch)  # unused by BiasBranch; built before the swap
            saved = without_memory(model)
            try:
                out = model(ids, labels=ids, memory_state=state, return_logits=False)
                out.loss.backward()
                model.zero_grad(set_to_none=True)
            finally:
                restore_memory(model, saved)

        started = time.perf_counter()
        step()  # the warm-up call; when compiling, it compiles (its time is reported apart)
        synchronize(device)
        first_step_s = time.perf_counter() - started
        reference_step()
        # CUDA graphs are recorded on the calls after the first: two more untimed calls when compiled.
        warmup = 2 if compile_mode != "none" else 0
        t_retrofit, t_base = time_pair([step, reference_step], device, repeats, warmup=warmup)
    finally:
        model.unload()
    overhead = t_retrofit / t_base
    tokens = batch * window * windows
    return {
        "layers": layers,
        "window": window,
        "windows": windows,
        "batch": batch,
        "chunk_size": cfg.chunk_size,
        "heads": cfg.num_heads,
        "head_dim": cfg.head_dim,
        "refresh_every": cfg.refresh_every,
        "compile": compile_mode,
        "first_step_s": first_step_s,
        "retrofit_step_s": t_retrofit,
        "base_step_s": t_base,
        "retrofit_tok_s": tokens / t_retrofit,
        "base_tok_s": tokens / t_base,
        "training_overhead": overhead,
        "overhead_per_memory_layer": 1 + (overhead - 1) / len(layers),
    }


# ----- 3. inference over long inputs -------------------------------------------------------------------
class PeakMemory:
    """Peak memory during a block: resident set size on CPU (sampled by a thread), allocated bytes on CUDA."""

    def __init__(self, device: torch.device, interval: float = 0.005) -> None:
        self.device, self.interval = device, interval
        self.peak = self.start = self.peak_reserved = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        import psutil

        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            import psutil

            self.start = self.peak = psutil.Process().memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            self.peak_reserved = torch.cuda.max_memory_reserved(self.device)
        else:
            self._stop.set()
            self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    @property
    def above_start_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def measure_read(
    name: str, read: Callable[[Tensor], None], ids: Tensor, device: torch.device, repeats: int = 1
) -> dict[str, Any]:
    """Time `repeats` reads of ids (1, N): tokens/s of the fastest (as timeit does: the others carry noise
    from the machine), peak memory the highest of all."""
    runs = []
    for _ in range(max(repeats, 1)):
        with PeakMemory(device) as peak:
            start = time.perf_counter()
            read(ids)
            synchronize(device)
            seconds = time.perf_counter() - start
        # After the block: on CUDA the peak is read when the block exits.
        runs.append((seconds, peak.peak_mb, peak.above_start_mb, peak.peak_reserved / 2**20))
    seconds = min(r[0] for r in runs)
    n = ids.shape[1]
    return {
        "model": name,
        "tokens": n,
        "tok_s": n / seconds,
        "peak_mb": max(r[1] for r in runs),
        "above_start_mb": max(r[2] for r in runs),
        "peak_reserved_mb": max(r[3] for r in runs),  # CUDA: the caching allocator's reserve; CPU: 0
        "seconds": seconds,
        "seconds_all": [round(r[0], 4) for r in runs],
    }


@torch.no_grad()
def read_retrofit(model: nn.Module, ids: Tensor, piece: int) -> None:
    """Read ids (B, N) into a retrofit's memory in pieces, keeping only the memory state (no logits)."""
    state = None
    for start in range(0, ids.shape[1], piece):
        state = model(ids[:, start : start + piece], memory_state=state, return_logits=False).memory_state


@torch.no_grad()
def read_base(base: nn.Module, ids: Tensor, piece: int) -> None:
    """Read ids (B, N) into the base with full attention, in pieces, its KV cache growing (no logits)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=base.config)
    # transformers 5.x renamed `past_key_values` to `cache`; pass whichever this version takes.
    name = "cache" if "cache" in inspect.signature(base.model.forward).parameters else "past_key_values"
    for start in range(0, ids.shape[1], piece):
        base.model(input_ids=ids[:, start : start + piece], use_cache=True, **{name: cache})


def bench_inference(
    base: nn.Module,
    config: TitansConfig,
    lengths: list[int],
    device: torch.device,
    native_context: int,
    base_piece: int | None = None,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """Tokens/s and peak memory reading each length: the retrofit at every length (in window-sized pieces),
    the base with full attention up to native_context (in base_piece-sized pieces, default the window);
    each read `repeats` times (see measure_read)."""
    piece = config.window
    base_piece = base_piece or piece
    vocab = base.config.vocab_size
    rows: list[dict[str, Any]] = []
    model = retrofit(base, config)
    # One untimed read first: the first read of a process pays for allocator and kernel warm-up.
    warmup = torch.randint(0, vocab, (1, 2 * piece), device=device)
    try:
        read_retrofit(model, warmup, piece)
        for n in lengths:
            ids = torch.randint(0, vocab, (1, n), device=device)
            rows.append(measure_read("retrofit", lambda t: read_retrofit(model, t, piece), ids, device, repeats))
    finally:
        model.unload()
    read_base(base, warmup, base_piece)
    for n in lengths:
        if n > native_context:
            continue
        ids = torch.randint(0, vocab, (1, n), device=device)
        rows.append(measure_read("base_full_attention", lambda t: read_base(base, t, base_piece), ids, device, repeats))
    return rows


def flatness(rows: list[dict[str, Any]], key: str) -> float:
    """max / min of a column over rows: 1.0 is perfectly flat."""
    values = [r[key] for r in rows]
    return max(values) / min(values) if values and min(values) > 0 else float("nan")


# ----- 4. FLOPs ---------------------------------------------------------------------------------------
def flops_report(base_config: Any, config: TitansConfig, context: float) -> dict[str, Any]:
    """Per-token FLOPs of one memory layer against the base's forward and forward+backward at mean context."""
    mem = memory_flops(base_config.hidden_size, config)
    base_forward = base_flops_from_config(base_config, context)
    return {
        "memory_per_layer": mem.as_dict(),
        "base_forward": base_forward,
        "base_forward_backward": 3 * base_forward,
        "memory_fwd_bwd_over_base_fwd_bwd": mem.forward_backward / (3 * base_forward),
    }


# ----- architectures with random weights (timing does not depend on weights) ------------------------
# Published configurations (config.json on the hub); rope scaling is left out, it does not change the cost.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "smollm2-135m": dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
    ),
    "llama-3.2-1b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
        head_dim=64, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    ),
    "llama-3.1-8b": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        head_dim=128, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
}  # fmt: skip


def random_base(arch: str | dict[str, Any], device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A LlamaForCausalLM with random weights, built on the device: a named published architecture or LlamaConfig fields."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if isinstance(arch, dict):
        fields, name = arch, "custom"
    elif arch in ARCHITECTURES:
        fields, name = ARCHITECTURES[arch], arch
    else:
        raise ValueError(f"Unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}.")
    config = LlamaConfig(**fields)
    config.name_or_path = f"random-{name}"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def quantize_4bit(model: nn.Module) -> nn.Module:
    """Replace the decoder layers' linear layers by bitsandbytes NF4 ones (CUDA only), for a 4-bit base.

    The random weights are quantized as they move to the GPU; embeddings, norms and the LM head stay bf16.
    """
    import bitsandbytes as bnb

    for layer in model.model.layers:
        for parent in layer.modules():
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    q = bnb.nn.Linear4bit(
                        child.in_features,
                        child.out_features,
                        bias=child.bias is not None,
                        compute_dtype=torch.bfloat16,
                        quant_type="nf4",
                    )
                    q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4")  # quantized by .to()
                    setattr(parent, name, q.to(child.weight.device))
    return model
