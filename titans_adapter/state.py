"""MemoryState: everything a retrofitted model carries from one call to the next on the same stream."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor
from transformers import Cache

from .memory import LayerMemoryState


@dataclass
class MemoryState:
    """The state of B streams read so far.

    layers: per memory layer index, the neural memory's weights, momentum and pending tokens.
    tokens_seen: real tokens read so far (the same for every stream of the batch).
    cache: the frozen attention's KV cache of the unfinished window (prefix included), else None.
    recent_ids: the last `overlap` tokens read (B, <= overlap), re-read at the next window start.
    """

    layers: dict[int, LayerMemoryState]
    tokens_seen: int = 0
    cache: Cache | None = None
    recent_ids: Tensor | None = None
    window: int = field(default=0, repr=False)

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
        )
