"""MemoryState: everything a retrofitted model carries from one call to the next on the same stream."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor
from transformers import Cache, DynamicCache

from .memory import LayerMemoryState


@dataclass
class MemoryState:
    """The state of B streams read so far.

    layers: per memory layer index, the neural memory's weights, momentum and pending tokens.
    tokens_seen: real tokens read so far (the same for every stream of the batch).
    cache: the frozen attention's KV cache of the unfinished window (prefix included), else None.
    recent_ids: the last `overlap` tokens read (B, <= overlap), re-read at the next window start.
    cache_length: positions of `cache` that belong to this state. forward() appends to the cache object
    in place; when a state is continued a second time its cache has grown past this length, and the
    continuation then works on a copy cut back to it (see `cache_prefix`), so both branches stay right.
    """

    layers: dict[int, LayerMemoryState]
    tokens_seen: int = 0
    cache: Cache | None = None
    recent_ids: Tensor | None = None
    window: int = field(default=0, repr=False)
    cache_length: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.cache is not None and self.cache_length is None:
            self.cache_length = self.cache.get_seq_length()

    def own_cache(self) -> Cache | None:
        """The cache to continue this state with: the shared object, or a cut copy if it was extended since."""
        if self.cache is None or self.cache.get_seq_length() == self.cache_length:
            return self.cache
        return cache_prefix(self.cache, self.cache_length)

    @property
    def batch_size(self) -> int:
        return next(iter(self.layers.values())).weights[0].shape[0]

    @property
    def window_pos(self) -> int:
        """Tokens already read in the current window."""
        return self.tokens_seen % self.window

    def detach(self) -> MemoryState:
        """The same state cut from the autograd graph (truncated backprop through time)."""
        return MemoryState(
            layers={i: s.detach() for i, s in self.layers.items()},
            tokens_seen=self.tokens_seen,
            cache=self.cache,
            recent_ids=self.recent_ids,
            window=self.window,
            cache_length=self.cache_length,
        )

    # ----- copies, batch rows and flat tensors (generation and saving) ---------------------------------
    def copy(self) -> MemoryState:
        """A state whose KV cache is a new object (tensors shared, never written in place)."""
        return self._with(lambda t: t, lambda t: t)

    def select(self, rows: slice | list[int]) -> MemoryState:
        """The streams `rows` of the batch, as their own state."""
        return self._with(lambda t: t[rows], lambda t: t[rows])

    def expand(self, batch_size: int) -> MemoryState:
        """A state of one stream repeated `batch_size` times (one memory, several prompts)."""
        if self.batch_size != 1:
            raise ValueError(f"Only a state of one stream can be expanded, this one holds {self.batch_size}.")
        return self._with(
            lambda t: t.expand(batch_size, *t.shape[1:]),
            lambda t: t.expand(batch_size, *t.shape[1:]).contiguous(),
        )

    def _with(self, fn_memory, fn_cache) -> MemoryState:
        cache = None
        if self.cache is not None:
            kv = [(fn_cache(k), fn_cache(v)) for k, v in cache_key_values(self.own_cache())]
            cache = DynamicCache(ddp_cache_data=kv)
        return MemoryState(
            layers={i: s.map(fn_memory) for i, s in self.layers.items()},
            tokens_seen=self.tokens_seen,
            cache=cache,
            recent_ids=None if self.recent_ids is None else fn_cache(self.recent_ids),
            window=self.window,
        )

    def to_tensors(self) -> dict[str, Tensor]:
        """Every tensor of the state under a flat name, contiguous and unshared (what safetensors needs).

        memory.<layer>.<name>: weights, momentum, read weights, pending chunk (LayerMemoryState.tensors);
        cache.<i>.keys / cache.<i>.values: the unfinished window's KV cache (B, kv_heads, n, head_dim);
        recent_ids: the overlap tokens.
        """
        out: dict[str, Tensor] = {}
        for layer, s in self.layers.items():
            for name, t in s.tensors().items():
                out[f"memory.{layer}.{name}"] = t.detach().contiguous().clone()
        if self.cache is not None:
            for i, (k, v) in enumerate(cache_key_values(self.own_cache())):
                out[f"cache.{i}.keys"] = k.detach().contiguous().clone()
                out[f"cache.{i}.values"] = v.detach().contiguous().clone()
        if self.recent_ids is not None:
            out["recent_ids"] = self.recent_ids.contiguous().clone()
        return out

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, Tensor], *, tokens_seen: int, window: int, depth: int, chunks_written: dict[int, int]
    ) -> MemoryState:
        """Inverse of to_tensors. Raises KeyError naming a missing tensor."""
        layers = {}
        for layer, chunks in chunks_written.items():
            prefix = f"memory.{layer}."
            own = {k[len(prefix) :]: t for k, t in tensors.items() if k.startswith(prefix)}
            layers[layer] = LayerMemoryState.from_tensors(own, depth, chunks)
        cache = None
        num_cache_layers = len({k.split(".")[1] for k in tensors if k.startswith("cache.")})
        if num_cache_layers:
            kv = [(tensors[f"cache.{i}.keys"], tensors[f"cache.{i}.values"]) for i in range(num_cache_layers)]
            cache = DynamicCache(ddp_cache_data=kv)
        return cls(layers=layers, tokens_seen=tokens_seen, cache=cache, recent_ids=tensors.get("recent_ids"), window=window)


def cache_key_values(cache: Cache) -> list[tuple[Tensor, Tensor]]:
    """(keys, values) per attention layer of a filled KV cache, each (B, kv_heads, n, head_dim)."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def cache_prefix(cache: Cache, length: int) -> DynamicCache:
    """A new cache holding the first `length` positions of `cache` (views, autograd-safe)."""
    return DynamicCache(ddp_cache_data=[(k[:, :, :length], v[:, :, :length]) for k, v in cache_key_values(cache)])
