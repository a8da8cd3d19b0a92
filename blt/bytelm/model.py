"""The byte language model: a plain torch `nn.Module` causal transformer over byte ids.

`ByteLM(cfg)(ids [B, T] int64) -> logits [B, T, V] float`. Pre-norm blocks (RMSNorm), rotary positions,
`F.scaled_dot_product_attention` (flash / memory-efficient kernels on GPU), SwiGLU MLP, optional sliding-window
attention and weight tying. No Lightning and no file I/O here: `bytelm.train` trains it, `bytelm.checkpoint` saves it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from blt.config import Config, ModelConfig


def _ffn_hidden(cfg: ModelConfig) -> int:
    if cfg.ffn_hidden is not None:
        return cfg.ffn_hidden
    # SwiGLU with 8/3 * d keeps the parameter count of a 4 * d GELU MLP (LLaMA's choice).
    return 32 * math.ceil(8 * cfg.d_model / 3 / 32)


class Rotary(nn.Module):
    """Rotary position embedding tables for positions 0..context-1 (extended on demand)."""

    inv_freq: torch.Tensor  # buffers, registered in __init__
    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, head_dim: int, context: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        cos, sin = self._tables(context)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.arange(length, dtype=torch.float32, device=self.inv_freq.device)
        freqs = torch.outer(t, self.inv_freq)  # [T, head_dim/2]
        return freqs.cos(), freqs.sin()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, H, T, head_dim] -> same shape, rotated by position."""
        T = x.shape[-2]
        # Longer than the cached tables: compute them for this call only (never mutate buffers in forward, which
        # under inference_mode would leave inference tensors behind for the next training step).
        cos, sin = (self.cos[:T], self.sin[:T]) if T <= self.cos.shape[0] else self._tables(T)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # [T, hd/2]
        x1, x2 = x[..., 0::2], x[..., 1::2]  # [B, H, T, hd/2] each
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # [B, H, T, hd/2, 2]
        return out.flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.sliding_window = cfg.sliding_window
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.rotary = Rotary(self.head_dim, cfg.context, cfg.rope_base)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x [B, T, D]
        q, k, v = (t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # [B, H, T, hd]
        q, k = self.rotary(q), self.rotary(k)
        dropout = self.dropout if self.training else 0.0
        if self.sliding_window is None or self.sliding_window >= T:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            i = torch.arange(T, device=x.device)
            lag = i[:, None] - i[None, :]  # [T, T]: query position minus key position
            mask = (lag >= 0) & (lag < self.sliding_window)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).reshape(B, T, D)  # [B, T, H*hd]
        return F.dropout(self.proj(y), dropout, self.training)


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = _ffn_hidden(cfg)
        self.gate_up = nn.Linear(cfg.d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # [B, T, hidden] each
        return F.dropout(self.down(F.silu(gate) * up), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        out: torch.Tensor = x + self.mlp(self.mlp_norm(x))
        return out


class ByteLM(nn.Module):
    """Causal transformer over byte ids: `forward(ids [B, T]) -> logits [B, T, vocab_size]`.

    `logits[:, t]` is the prediction for the id at position t + 1, i.e. the model sees ids[:, : t + 1].
    """

    full_config: Config  # the whole config it was trained with: set by blt.bytelm.checkpoint.load_model

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # provenance (data, steps, val bits/byte) set by blt.bytelm.checkpoint.load_model
        self.card: dict[str, Any] = {}
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.apply(self._init)
        # GPT-2's scaled init of residual projections keeps the residual stream's variance flat in depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def context(self) -> int:
        return self.cfg.context

    def num_params(self) -> int:
        """Parameters counted once (a tied embedding is not counted twice)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: [B, T] int64 -> logits [B, T, V] (float32 unless under autocast)."""
        x = self.embed(ids)  # [B, T, D]
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x))  # [B, T, V]
        if self.cfg.temperature != 1.0:  # a calibration fitted after training (blt.bytelm.temperature)
            logits = logits / self.cfg.temperature
        return logits
