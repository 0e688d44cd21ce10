"""The Titans neural memory: a per-head MLP whose weights are trained by gradient descent at test time.

Math (DESIGN.md §4), per head, with chunks of c tokens:
    M_W(k) = k + W_L act(... act(W_1 k))                     residual MLP memory
    l_t(W) = || M_W(k_t) - v_t ||^2                          associative loss
    G_j    = sum_{t in chunk j} theta_t grad l_t(W_j)         all gradients at the chunk's start weights
    S_{j+1} = eta_j S_j - clip(G_j)                           surprise with momentum
    W_{j+1} = (1 - alpha_j) W_j + S_{j+1}                     forgetting (toward zero)
    W_{j+1} = W_0 + (1 - alpha_j)(W_j - W_0) + S_{j+1}         forget_toward_init: toward the learned W_0
    y_t    = M_{W_j}(q_t)                                     retrieval, strictly causal
theta_t is per token; eta_j and alpha_j are per chunk (sigmoid of the chunk's mean gate logit).
G_j is computed in closed form with a handful of batched matmuls, so the outer autograd can
differentiate through the inner updates without double backward. All memory math runs in fp32.

With refresh_every = r > 1, reads and gradients use the weights of the last refresh point (every r
chunks) while the momentum/forgetting recurrence still runs per chunk: cheaper, less expressive.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TitansConfig


def mlp_branch(weights: list[Tensor], x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """mlp_forward without the residual: M(x) - x, pre-activations and layer inputs."""
    pre_acts: list[Tensor] = []
    inputs = [x]
    a = x
    for i, w in enumerate(weights):
        z = a @ w
        if i < len(weights) - 1:
            pre_acts.append(z)
            a = F.silu(z)
            inputs.append(a)
    return z, pre_acts, inputs


def mlp_forward(weights: list[Tensor], x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Residual MLP memory M(x) = x + MLP(x). weights[i]: (..., d_in, d_out); x: (..., rows, head_dim).

    Returns the output and what the closed-form backward needs: pre-activations and layer inputs.
    """
    z, pre_acts, inputs = mlp_branch(weights, x)
    return x + z, pre_acts, inputs


def mlp_weight_grads(weights: list[Tensor], pre_acts: list[Tensor], inputs: list[Tensor], err: Tensor) -> list[Tensor]:
    """Gradients of sum_rows <err, M(x)> w.r.t. each weight, given err = dLoss/dM(x): (..., rows, head_dim)."""
    grads: list[Tensor] = [err] * len(weights)
    delta = err
    for i in reversed(range(len(weights))):
        grads[i] = inputs[i].transpose(-1, -2) @ delta
        if i > 0:
            delta = (delta @ weights[i].transpose(-1, -2)) * silu_grad_from(pre_acts[i - 1], inputs[i])
    return grads


class _L2Normalize(torch.autograd.Function):
    """x / max(||x||, eps) over the last dim, as F.normalize, with a backward of three full-size passes
    (F.normalize's autograd runs about ten, most of them divisions by a broadcast norm)."""

    @staticmethod
    def forward(ctx, x: Tensor, eps: float) -> Tensor:
        squared = x.pow(2).sum(-1, keepdim=True)
        inv_norm = torch.rsqrt(squared.clamp_min(eps * eps))
        y = x * inv_norm
        ctx.save_for_backward(y, inv_norm, squared > eps * eps)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        y, inv_norm, unclamped = ctx.saved_tensors
        # d(x / |x|) = (g - y <g, y>) / |x|; where the norm was clamped to eps, y = x / eps is linear in x.
        radial = (grad * y).sum(-1, keepdim=True) * unclamped
        return (grad - y * radial) * inv_norm, None


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Unit vectors along the last dim (F.normalize(x, dim=-1), faster to differentiate)."""
    return _L2Normalize.apply(x, eps)


def forget_and_add(weight: Tensor, surprise: Tensor, keep: Tensor, anchor: Tensor | None) -> Tensor:
    """One forgetting step plus the new surprise: anchor + keep (weight - anchor) + surprise (anchor None: zero)."""
    if anchor is None:
        return torch.addcmul(surprise, keep, weight)
    return torch.addcmul(surprise + anchor, keep, weight - anchor)


def silu_grad_from(z: Tensor, a: Tensor) -> Tensor:
    """silu'(z) given a = silu(z): sigmoid(z) (1 - a) + a, three kernels instead of five."""
    return torch.addcmul(a, torch.sigmoid(z), 1 - a)


@dataclass
class LayerMemoryState:
    """What one memory layer carries between calls, for a batch of B streams.

    weights, momentum: per MLP layer, (B, H, d_in, d_out) fp32; read_weights: the weights reads and
    gradients use (the same list unless refresh_every > 1). pending_*: tokens of the unfinished chunk,
    written when it fills: keys/values (B, H, p, head_dim), theta (B, H, p), gate_logits (B, H, p, 2).
    last_key: with transition keys, the key of the last token read (B, H, 1, head_dim); with bigram keys, its
    context key; empty before any.
    """

    weights: list[Tensor]
    momentum: list[Tensor]
    read_weights: list[Tensor]
    pending_keys: Tensor
    pending_values: Tensor
    pending_theta: Tensor
    pending_gate_logits: Tensor
    last_key: Tensor | None = None
    chunks_written: int = 0

    def __post_init__(self) -> None:
        if self.last_key is None:
            self.last_key = self.pending_keys[:, :, :0]

    def tensors(self) -> dict[str, Tensor]:
        """Flat name -> tensor view, for saving and for detaching."""
        out: dict[str, Tensor] = {}
        for name in ("weights", "momentum", "read_weights"):
            for i, t in enumerate(getattr(self, name)):
                out[f"{name}.{i}"] = t
        for f in fields(self):
            if f.name.startswith("pending_") or f.name == "last_key":
                out[f.name] = getattr(self, f.name)
        return out

    def map(self, fn) -> LayerMemoryState:
        """A new state with fn applied to every tensor."""
        return LayerMemoryState(
            weights=[fn(t) for t in self.weights],
            momentum=[fn(t) for t in self.momentum],
            read_weights=[fn(t) for t in self.read_weights],
            pending_keys=fn(self.pending_keys),
            pending_values=fn(self.pending_values),
            pending_theta=fn(self.pending_theta),
            pending_gate_logits=fn(self.pending_gate_logits),
            last_key=fn(self.last_key),
            chunks_written=self.chunks_written,
        )

    def detach(self) -> LayerMemoryState:
        return self.map(lambda t: t.detach())

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], depth: int, chunks_written: int) -> LayerMemoryState:
        lists = {name: [tensors[f"{name}.{i}"] for i in range(depth)] for name in ("weights", "momentum", "read_weights")}
        pending = {name: tensors[name] for name in ("pending_keys", "pending_values", "pending_theta", "pending_gate_logits")}
        return cls(**lists, **pending, last_key=tensors.get("last_key"), chunks_written=chunks_written)


class NeuralMemory(nn.Module):
    """Multi-head Titans memory over input features x: (B, T, dim).

    forward(x, state) retrieves for every token with the weights its chunk may see, writes every
    completed chunk, and returns (retrieved (B, T, num_heads * head_dim), new state).
    """

    def __init__(self, dim: int, config: TitansConfig) -> None:
        super().__init__()
        self.config = config
        heads, head_dim, hidden = config.num_heads, config.head_dim, config.memory_hidden
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        # Gate logits per head and token: theta (learning rate), eta (momentum), alpha (forget).
        self.to_gates = nn.Linear(dim, 3 * heads)
        with torch.no_grad():
            self.to_gates.weight.normal_(std=0.02)
            bias = self.to_gates.bias.view(3, heads)
            bias[0].fill_(config.theta_bias_init)
            bias[1].fill_(config.momentum_bias_init)
            bias[2].fill_(config.forget_bias_init)
        if config.transition_keys:  # keys start as the query projection: a state like token t-1's finds its key
            with torch.no_grad():
                qkv = self.to_qkv.weight.view(3, heads * head_dim, dim)
                qkv[1].copy_(qkv[0])
        if config.bigram_keys:  # the context key starts as the query projection: a query like token t-1 finds t
            self.to_context_key = nn.Linear(dim, heads * head_dim, bias=False)
            with torch.no_grad():
                self.to_context_key.weight.copy_(self.to_qkv.weight[: heads * head_dim])
        dims = [head_dim] + [hidden] * (config.memory_depth - 1) + [head_dim]
        self.initial_weights = nn.ParameterList(
            nn.Parameter(torch.randn(heads, d_in, d_out) / d_in**0.5) for d_in, d_out in zip(dims[:-1], dims[1:])
        )
        if config.read_delta:  # the memory starts empty: M(k) = k until something is written
            with torch.no_grad():
                self.initial_weights[-1].zero_()

    # ----- state -----------------------------------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device | None = None) -> LayerMemoryState:
        """Fresh state: the learned initial weights (kept in the graph), zero momentum, nothing pending."""
        cfg = self.config
        device = device or self.initial_weights[0].device
        weights = [w.float().unsqueeze(0).expand(batch_size, *w.shape) for w in self.initial_weights]
        empty = torch.zeros(batch_size, cfg.num_heads, 0, cfg.head_dim, device=device)
        return LayerMemoryState(
            weights=weights,
            momentum=[torch.zeros_like(w) for w in weights],
            read_weights=weights,
            pending_keys=empty,
            pending_values=empty,
            pending_theta=torch.zeros(batch_size, cfg.num_heads, 0, device=device),
            pending_gate_logits=torch.zeros(batch_size, cfg.num_heads, 0, 2, device=device),
        )

    # ----- projections -------------------------------------------------------------------------
    def project(self, x: Tensor, input_scale: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """x (B, T, dim) -> q, k, v (B, H, T, head_dim) L2-normalized; theta (B, H, T); gate logits (B, H, T, 2).

        input_scale (dim,), optional: a per-feature scale of x (a norm's weight), folded into the weights.
        """
        cfg = self.config
        B, T, _ = x.shape
        qkv_weight, gates_weight = self.to_qkv.weight, self.to_gates.weight
        if input_scale is not None:
            qkv_weight, gates_weight = qkv_weight * input_scale, gates_weight * input_scale
        qkv = l2_normalize(F.linear(x, qkv_weight).view(B, T, 3 * cfg.num_heads, cfg.head_dim))
        q, k, v = qkv.unflatten(2, (3, cfg.num_heads)).permute(2, 0, 3, 1, 4)  # each (B, H, T, head_dim)
        gates = F.linear(x, gates_weight, self.to_gates.bias).view(B, T, 3, cfg.num_heads).permute(0, 3, 1, 2)  # (B, H, T, 3)
        theta = cfg.theta_max * torch.sigmoid(gates[..., 0])
        return q, k, v, theta, gates[..., 1:]

    @staticmethod
    def shift_keys(k: Tensor, theta: Tensor, last_key: Tensor, token_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Transition keys: token t is written under the key of token t-1, so that a query made from a
        state like token t-1's retrieves what came next (a causal state never holds the next token).

        k (B, H, T, head_dim), theta (B, H, T), last_key (B, H, 0 or 1, head_dim). A token without a real
        predecessor (the stream's first, or the first after padding) writes nothing: its theta becomes 0.
        Returns the shifted keys, theta, and the new last key.
        """
        if last_key.shape[2] == 0:
            last_key = torch.zeros_like(k[:, :, :1])
            theta = torch.cat([torch.zeros_like(theta[:, :, :1]), theta[:, :, 1:]], dim=2)
        if token_mask is not None:
            previous_real = torch.cat([token_mask.new_ones(token_mask.shape[0], 1), token_mask[:, :-1]], dim=1)
            theta = theta * previous_real[:, None, :].to(theta.dtype)
        return torch.cat([last_key, k[:, :, :-1]], dim=2), theta, k[:, :, -1:]

    def context_keys(self, x: Tensor, input_scale: Tensor | None = None) -> Tensor:
        """Bigram keys' context part of every token: x (B, T, dim) -> (B, H, T, head_dim), L2-normalized."""
        B, T, _ = x.shape
        weight = self.to_context_key.weight if input_scale is None else self.to_context_key.weight * input_scale
        context = l2_normalize(F.linear(x, weight).view(B, T, self.config.num_heads, self.config.head_dim))
        return context.transpose(1, 2)

    @staticmethod
    def add_previous_context(
        k: Tensor, context: Tensor, last_context: Tensor, token_mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Bigram keys: token t's key becomes normalize(k_t + context_{t-1}), so what preceded a token names it.

        k, context (B, H, T, head_dim); last_context (B, H, 0 or 1, head_dim), the previous call's last token. A token
        without a real predecessor (the stream's first, or the first after padding) keeps its own key.
        Returns the keys and the new last context.
        """
        if last_context.shape[2] == 0:
            last_context = torch.zeros_like(context[:, :, :1])
        previous = torch.cat([last_context, context[:, :, :-1]], dim=2)
        if token_mask is not None:
            previous_real = torch.cat([token_mask.new_ones(token_mask.shape[0], 1), token_mask[:, :-1]], dim=1)
            previous = previous * previous_real[:, None, :, None].to(previous.dtype)
        return l2_normalize(k + previous), context[:, :, -1:]

    def written_keys(
        self,
        x: Tensor,
        k: Tensor,
        theta: Tensor,
        state: LayerMemoryState,
        token_mask: Tensor | None = None,
        input_scale: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, LayerMemoryState]:
        """The keys tokens are written under, their theta, and the state with its last key: the tokens' own keys,
        token t-1's (transition keys) or their own plus token t-1's context key (bigram keys).

        x (B, T, dim) fp32 with T >= 1; k (B, H, T, head_dim) and theta (B, H, T) from project(x, input_scale).
        """
        if self.config.transition_keys:
            k, theta, last_key = self.shift_keys(k, theta, state.last_key, token_mask)
        elif self.config.bigram_keys:
            k, last_key = self.add_previous_context(k, self.context_keys(x, input_scale), state.last_key, token_mask)
        else:
            return k, theta, state
        return k, theta, replace(state, last_key=last_key)

    # ----- read / write ------------------------------------------------------------------------
    @staticmethod
    def read(weights: list[Tensor], queries: Tensor) -> Tensor:
        """Retrieve M_W(q) without changing W. weights (B, H, ...); queries (B, H, rows, head_dim)."""
        return mlp_forward(weights, queries)[0]

    def chunk_update(self, weights: list[Tensor], keys: Tensor, values: Tensor, theta: Tensor) -> list[Tensor]:
        """Clipped surprise G of n chunks at the same weights.

        weights (B, H, d_in, d_out); keys/values (B, H, n, c, head_dim); theta (B, H, n, c).
        Returns per weight (B, H, n, d_in, d_out): sum_t theta_t grad l_t, its per-head norm bounded.
        """
        expanded = [w.unsqueeze(2) for w in weights]
        out, pre_acts, inputs = mlp_forward(expanded, keys)
        err = 2 * (out - values) * theta.unsqueeze(-1)
        grads = mlp_weight_grads(expanded, pre_acts, inputs, err)
        norm = torch.sqrt(sum(g.pow(2).sum(dim=(-1, -2)) for g in grads) + 1e-12)  # (B, H, n)
        scale = (self.config.max_update_norm / norm).clamp(max=1.0)[..., None, None]
        return [g * scale for g in grads]

    def momentum_and_forget(self, gate_logits: Tensor) -> tuple[Tensor, Tensor]:
        """gate_logits (B, H, n, c, 2) -> eta, alpha per chunk (B, H, n), each in (0, 1) or 0 when switched off."""
        mean = gate_logits.mean(dim=3)
        eta = torch.sigmoid(mean[..., 0]) if self.config.use_momentum else torch.zeros_like(mean[..., 0])
        alpha = torch.sigmoid(mean[..., 1]) if self.config.use_forget else torch.zeros_like(mean[..., 1])
        return eta, alpha

    def forget_anchors(self) -> list[Tensor | None]:
        """Per MLP layer, what forgetting decays toward: the learned initial weights (H, d_in, d_out) with
        forget_toward_init, so forgetting bounds drift without erasing what training put there; else zero."""
        if self.config.forget_toward_init:
            return [w.float() for w in self.initial_weights]
        return [None] * len(self.initial_weights)

    def write_chunks(
        self, state: LayerMemoryState, keys: Tensor, values: Tensor, theta: Tensor, gate_logits: Tensor
    ) -> LayerMemoryState:
        """Write n full chunks that all read state.read_weights (n <= chunks left before the next refresh)."""
        updates = self.chunk_update(state.read_weights, keys, values, theta)
        eta, alpha = self.momentum_and_forget(gate_logits)
        return self._apply_updates(state, updates, eta, alpha)

    def _apply_updates(self, state: LayerMemoryState, updates: list[Tensor], eta: Tensor, alpha: Tensor) -> LayerMemoryState:
        """Run momentum and forgetting over n chunks. updates[i] (B, H, n, d_in, d_out); eta, alpha (B, H, n)."""
        steps = [-u for u in updates]
        weights, momentum = self._momentum_and_forget_loop(
            state.weights, state.momentum, steps, eta[..., None, None], (1 - alpha)[..., None, None]
        )
        chunks_written = state.chunks_written + eta.shape[2]
        refreshed = chunks_written % self.config.refresh_every == 0
        return LayerMemoryState(
            weights=weights,
            momentum=momentum,
            read_weights=weights if refreshed else state.read_weights,
            pending_keys=state.pending_keys[:, :, :0],
            pending_values=state.pending_values[:, :, :0],
            pending_theta=state.pending_theta[:, :, :0],
            pending_gate_logits=state.pending_gate_logits[:, :, :0],
            last_key=state.last_key,
            chunks_written=chunks_written,
        )

    def _momentum_and_forget_loop(
        self, weights: list[Tensor], momentum: list[Tensor], steps: list[Tensor], eta: Tensor, keep: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Chunk by chunk: S <- eta S + step;  W <- (1 - alpha) W + S (or decayed toward W_0).

        steps[i] (B, H, n, d_in, d_out) = -clip(G) per chunk; eta, keep = 1 - alpha: (B, H, n, 1, 1).
        """
        n = eta.shape[2]
        per_chunk = [u.unbind(2) for u in steps] if n > 1 else [[u.squeeze(2)] for u in steps]
        etas, keeps, anchors = eta.unbind(2), keep.unbind(2), self.forget_anchors()
        for j in range(n):
            momentum = [torch.addcmul(u[j], etas[j], s) for s, u in zip(momentum, per_chunk)]
            weights = [forget_and_add(w, s, keeps[j], a) for w, s, a in zip(weights, momentum, anchors)]
        return weights, momentum

    def _write_group(
        self,
        read_weights: list[Tensor],
        weights: list[Tensor],
        momentum: list[Tensor],
        qk: Tensor,
        kv_theta: Tensor,
        theta2: Tensor,
        eta: Tensor,
        keep: Tensor,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Read and write n chunks that share read_weights, with one MLP pass over their queries and keys.

        qk (B, H, n, 2c, head_dim): each chunk's c query rows, then its c key rows; kv_theta = 2 theta (k - v)
        and theta2 = 2 theta: (B, H, n, c, head_dim) and (B, H, n, c, 1); eta, keep = 1 - alpha: (B, H, n, 1, 1).
        Returns the reads without their residual, M(q) - q (B, H, n, c, head_dim), and the new weights and momentum.
        """
        n, c = qk.shape[2], qk.shape[3] // 2
        # One pass over all 2nc rows at the same weights: (B, H, n * 2c, d) @ (B, H, d, d_out).
        z, pre_acts, inputs = mlp_branch(read_weights, qk.flatten(2, 3))
        read, key_z = z.unflatten(2, (n, 2 * c)).split(c, dim=3)
        key_pre = [t.unflatten(2, (n, 2 * c)).split(c, dim=3)[1] for t in pre_acts]
        key_in = [t.unflatten(2, (n, 2 * c)).split(c, dim=3)[1] for t in inputs]
        err = torch.addcmul(kv_theta, key_z, theta2)  # 2 theta (M(k) - v) = 2 theta (k - v) + 2 theta (M(k) - k)
        grads = mlp_weight_grads([w.unsqueeze(2) for w in read_weights], key_pre, key_in, err)
        # Per-head bound on the norm of each chunk's summed update; the sign is folded in: u = -clip(G).
        norm = torch.linalg.vector_norm(torch.cat([g.flatten(-2) for g in grads], dim=-1), dim=-1)  # (B, H, n)
        neg_scale = (-self.config.max_update_norm / norm.clamp(min=self.config.max_update_norm))[..., None, None]
        weights, momentum = self._momentum_and_forget_loop(weights, momentum, [g * neg_scale for g in grads], eta, keep)
        return read, weights, momentum

    def forward(
        self, x: Tensor, state: LayerMemoryState, token_mask: Tensor | None = None, input_scale: Tensor | None = None
    ) -> tuple[Tensor, LayerMemoryState]:
        """x (B, T, dim) -> retrieved (B, T, H * head_dim) and the state after writing every full chunk.

        token_mask (B, T), optional: 0 marks padding, which is neither written nor counted.
        input_scale (dim,), optional: see project.
        """
        cfg = self.config
        B, T, _ = x.shape
        H, dh, c, r = cfg.num_heads, cfg.head_dim, cfg.chunk_size, cfg.refresh_every
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            q, k, v, theta, gate_logits = self.project(x, input_scale)
            if token_mask is not None:
                theta = theta * token_mask[:, None, :].to(theta.dtype)
            if T:
                k, theta, state = self.written_keys(x, k, theta, state, token_mask, input_scale)
            # The stream so far: pending tokens of the unfinished chunk, then the new ones.
            p = state.pending_keys.shape[2]
            if p:
                k = torch.cat([state.pending_keys, k], dim=2)
                v = torch.cat([state.pending_values, v], dim=2)
                theta = torch.cat([state.pending_theta, theta], dim=2)
                gate_logits = torch.cat([state.pending_gate_logits, gate_logits], dim=2)
            total = p + T
            n_full = total // c
            full = n_full * c
            reads: list[Tensor] = []
            if n_full:
                # Pending rows were read by the previous call: zero queries hold their place (output discarded).
                queries = torch.cat([q.new_zeros(B, H, p, dh), q], dim=2) if p else q
                chunked = [t[:, :, :full].unflatten(2, (n_full, c)) for t in (queries, k, v)]  # (B, H, n, c, dh)
                qk = torch.cat(chunked[:2], dim=3)  # (B, H, n_full, 2c, head_dim)
                theta2 = 2 * theta[:, :, :full].unflatten(2, (n_full, c)).unsqueeze(-1)  # (B, H, n_full, c, 1)
                kv_theta = (chunked[1] - chunked[2]) * theta2
                eta, alpha = self.momentum_and_forget(gate_logits[:, :, :full].unflatten(2, (n_full, c)))
                eta, keep = eta[..., None, None], (1 - alpha)[..., None, None]  # (B, H, n_full, 1, 1)
                # Groups of chunks that share read weights: up to the next refresh point.
                sizes, done = [], state.chunks_written
                while sum(sizes) < n_full:
                    sizes.append(min(n_full - sum(sizes), r - (done + sum(sizes)) % r))
                weights, momentum, read_weights = state.weights, state.momentum, state.read_weights
                chunk_reads: list[Tensor] = []
                for size, *group in zip(sizes, *(t.split(sizes, dim=2) for t in (qk, kv_theta, theta2, eta, keep))):
                    read, weights, momentum = self._write_group(read_weights, weights, momentum, *group)
                    chunk_reads.append(read)
                    done += size
                    if done % r == 0:
                        read_weights = weights
                # The residual of every full-chunk read, added once: (B, H, full, head_dim).
                written = torch.cat(chunk_reads, dim=2).flatten(2, 3)  # M(q) - q
                reads.append(written if cfg.read_delta else chunked[0].flatten(2, 3) + written)
                state = LayerMemoryState(
                    weights=weights,
                    momentum=momentum,
                    read_weights=read_weights,
                    pending_keys=state.pending_keys,
                    pending_values=state.pending_values,
                    pending_theta=state.pending_theta,
                    pending_gate_logits=state.pending_gate_logits,
                    last_key=state.last_key,
                    chunks_written=done,
                )
            # Leftover tokens read the current weights and wait for their chunk to fill.
            if total > full:
                leftover = q[:, :, max(full - p, 0) :]
                read = self.read(state.read_weights, leftover)
                reads.append(read - leftover if cfg.read_delta else read)
            state = replace(
                state,
                pending_keys=k[:, :, full:],
                pending_values=v[:, :, full:],
                pending_theta=theta[:, :, full:],
                pending_gate_logits=gate_logits[:, :, full:],
            )
            if not reads:  # an empty call
                retrieved = torch.zeros_like(q) if cfg.read_delta else q
            elif len(reads) == 1:
                retrieved = reads[0]
            else:
                retrieved = torch.cat(reads, dim=2)
            if n_full and p:
                retrieved = retrieved[:, :, p:]  # drop the pending rows: (B, H, T, head_dim)
        return retrieved.transpose(1, 2).reshape(B, T, H * dh), state
