"""TitansConfig: the few knobs of the memory adapter, validated up front."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


def unknown_key_error(key: str, valid: list[str], where: str) -> ConfigError:
    """An error naming the unknown key, a close match if there is one, and every valid key."""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"Unknown {where} key '{key}'.{hint} Valid keys: {', '.join(sorted(valid))}.")


@dataclass
class TitansConfig:
    """Configuration of the Titans memory adapter.

    The knobs that matter:
      layers        decoder layers (0-based) after which a memory side branch is inserted.
      window        tokens the frozen attention sees at once; positions restart every window.
      chunk_size    tokens per memory update; tokens of chunk j read the memory written by chunks < j.
      num_heads, head_dim   memory heads and their width (keys, values and queries per head).
      memory_depth  layers of the per-head MLP memory M(k) = k + MLP(k) (>= 2 for a nonlinear memory).
      memory_expansion  hidden width of the MLP as a multiple of head_dim.
      theta_max     upper bound of the data-dependent inner learning rate theta_t.
      max_update_norm  per-head bound on the norm of one chunk's summed inner gradient (stability).
      refresh_every chunks between refreshes of the weights that reads and gradients use (1 = exact).
      persistent_tokens  learned tokens prepended to every window (0 = off).
      overlap       tokens of the previous window re-read (not re-predicted) at each window start.
      truncate_bptt detach the memory state every this many windows (0 = backprop through all).
      use_momentum, use_forget  switch the momentum (eta) and forgetting (alpha) terms on or off.
      forget_toward_init  forgetting decays the memory toward its learned initial weights instead of
                    toward zero, so a forget gate can bound drift on long reads without erasing them.
      transition_keys  write token t under the key of token t-1 (queries start equal to keys), so a
                    read returns what followed a similar context: copying across windows.
      bigram_keys   write token t under the normalized sum of its own key and a context key of token t-1 (the
                    context projection starts equal to the query's), so a query from a state like token t-1's
                    finds token t by what preceded it, not by its position: the next digit of a number.
      read_delta    the branch reads M(q) - q, only what was written (the memory's last layer starts at
                    zero, so it starts empty), instead of M(q), where the query's echo drowns the writes.
    """

    layers: list[int] = field(default_factory=lambda: [8])
    window: int = 512
    chunk_size: int = 64
    num_heads: int = 4
    head_dim: int = 64
    memory_depth: int = 2
    memory_expansion: int = 2
    theta_max: float = 0.1
    theta_bias_init: float = -4.0
    momentum_bias_init: float = 2.0
    forget_bias_init: float = -6.0
    max_update_norm: float = 1.0
    refresh_every: int = 1
    persistent_tokens: int = 0
    overlap: int = 0
    truncate_bptt: int = 0
    use_momentum: bool = True
    use_forget: bool = True
    forget_toward_init: bool = False
    transition_keys: bool = False
    bigram_keys: bool = False
    read_delta: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.layers, int):
            self.layers = [self.layers]
        self.layers = [int(i) for i in self.layers]
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on any value that cannot work."""
        if not self.layers:
            raise ConfigError("layers must name at least one decoder layer.")
        if len(set(self.layers)) != len(self.layers) or min(self.layers) < 0:
            raise ConfigError(f"layers must be distinct non-negative indices, got {self.layers}.")
        for name in ("window", "chunk_size", "num_heads", "head_dim", "memory_expansion", "refresh_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.memory_depth < 1:
            raise ConfigError(f"memory_depth must be >= 1, got {self.memory_depth}.")
        if self.window < self.chunk_size:
            raise ConfigError(
                f"window ({self.window}) is smaller than the memory chunk_size ({self.chunk_size}): "
                "a window must hold at least one full chunk."
            )
        if not 0 <= self.overlap < self.window:
            raise ConfigError(f"overlap must be in [0, window), got {self.overlap}.")
        for name in ("persistent_tokens", "truncate_bptt"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.transition_keys and self.bigram_keys:
            raise ConfigError("transition_keys and bigram_keys both shift keys; choose one.")
        if self.theta_max <= 0 or self.max_update_norm <= 0:
            raise ConfigError("theta_max and max_update_norm must be positive.")

    def cacheable_layer(self, what: str) -> int:
        """The memory layer whose branch inputs depend on nothing but the window's own tokens (and the overlap
        before it), so they can be computed once and reused; a ConfigError saying why `what` cannot use them otherwise."""
        if len(self.layers) != 1 or self.persistent_tokens:
            raise ConfigError(
                f"{what} needs exactly one memory layer and no persistent tokens (layers {self.layers}, "
                f"persistent_tokens {self.persistent_tokens})."
            )
        return self.layers[0]

    @property
    def memory_hidden(self) -> int:
        return self.head_dim * self.memory_expansion

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TitansConfig:
        """Build from a dict; an unknown key fails with the valid keys and a did-you-mean."""
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in valid:
                raise unknown_key_error(key, valid, "TitansConfig")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
