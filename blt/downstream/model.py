"""The patch-level LM of the downstream experiment (BLT's shape at small scale) and its FLOPs per byte.

`PatchLM(cfg)(ids [B, T] int64 bytes, starts [B, T] bool) -> (byte_logits [B, T, 256], end_logits [B, T])`:

1. a **local encoder** (causal byte transformer, sliding-window attention) reads the bytes; a boundary flag is added
   to each byte's embedding (`starts[t]`: does a unit begin at byte t);
2. **pooling**: the encoder states of each unit's bytes are averaged into one vector and projected to the latent width;
3. a **latent transformer** runs causally over the units;
4. a **local decoder** predicts byte t from the encoder state of byte t-1 plus the latent state after the last unit
   that ended before t (`z[unit(t) - 1]`; a learned vector when none has), through a causal byte transformer.

`byte_logits[:, t]` predicts `ids[:, t]` (not t + 1): it depends on bytes < t and on `starts[:, : t + 1]` only.
`end_logits[:, t]` predicts whether a unit ends after byte t (`starts[:, t + 1]`), from bytes ≤ t and `starts[:, : t
+ 1]`. Segmentations whose boundaries are not a function of the bytes before them (BPE, SentencePiece, tiktoken,
space) pay for their boundaries through it, as a token LM pays for where its tokens end; causal ones (byte, fixed,
entropy patches from causal entropies) get them free. See `blt.downstream.train` for the loss.

FLOPs are counted the usual way (Kaplan et al. 2020): 2 per multiply-add of every matmul, attention as 2·2·d per
attended position, training = 3 × forward. Embedding lookups, norms and the pooling average are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from blt.bytelm.model import Block, _ffn_hidden
from blt.config import ModelConfig

N_BYTES = 256


@dataclass
class PatchLMConfig:
    d_local: int = 128  # width of the local encoder and decoder (per byte)
    local_heads: int = 4  # attention heads of the local encoder and decoder
    encoder_layers: int = 1  # local encoder blocks
    decoder_layers: int = 1  # local decoder blocks
    local_window: int = 64  # bytes a local block attends to (BLT's local models use sliding-window attention)
    d_latent: int = 256  # width of the latent transformer over units (--match-flops sizes it per segmentation)
    latent_heads: int = 4  # latent attention heads; d_latent must be a multiple of 2 × latent_heads
    latent_layers: int = 2  # latent transformer blocks
    context: int = 512  # bytes per training and evaluation window; the latent sees the units inside it


def _block_config(d: int, heads: int, context: int, window: int | None) -> ModelConfig:
    return ModelConfig(d_model=d, n_heads=heads, context=context, sliding_window=window, n_layers=1)


class PatchLM(nn.Module):
    """Local encoder → unit pooling → latent transformer → local decoder; see the module docstring."""

    def __init__(self, cfg: PatchLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        local = _block_config(cfg.d_local, cfg.local_heads, cfg.context, cfg.local_window)
        latent = _block_config(cfg.d_latent, cfg.latent_heads, cfg.context, None)
        self.byte_embed = nn.Embedding(N_BYTES, cfg.d_local)
        self.start_embed = nn.Embedding(2, cfg.d_local)  # is byte t the first of a unit
        self.encoder = nn.ModuleList(Block(local) for _ in range(cfg.encoder_layers))
        self.encoder_norm = nn.RMSNorm(cfg.d_local)
        self.to_latent = nn.Linear(cfg.d_local, cfg.d_latent, bias=False)
        self.latent = nn.ModuleList(Block(latent) for _ in range(cfg.latent_layers))
        self.latent_norm = nn.RMSNorm(cfg.d_latent)
        self.from_latent = nn.Linear(cfg.d_latent, cfg.d_local, bias=False)
        self.no_unit = nn.Parameter(torch.zeros(cfg.d_local))  # the context before any unit has ended
        self.bos = nn.Parameter(torch.zeros(cfg.d_local))  # "byte -1": what the decoder reads at a window's start
        self.decoder = nn.ModuleList(Block(local) for _ in range(cfg.decoder_layers))
        self.decoder_norm = nn.RMSNorm(cfg.d_local)
        self.byte_head = nn.Linear(cfg.d_local, N_BYTES, bias=False)
        self.end_head = nn.Sequential(
            nn.RMSNorm(cfg.d_local), nn.Linear(cfg.d_local, cfg.d_local), nn.SiLU(), nn.Linear(cfg.d_local, 1)
        )
        self.apply(self._init)
        depth = max(cfg.encoder_layers + cfg.decoder_layers, 1)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                layers = cfg.latent_layers if name.startswith("latent") else depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * max(layers, 1)))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, ids: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B, T] int64 in 0..255, starts [B, T] bool (column 0 all True) -> byte logits [B, T, 256] (for byte
        t), end logits [B, T] (a unit ends after byte t)."""
        B, T = ids.shape
        D = self.cfg.d_local
        x = self.byte_embed(ids) + self.start_embed(starts.long())  # [B, T, D]
        for block in self.encoder:
            x = block(x)
        h = self.encoder_norm(x)  # [B, T, D]: byte t's state has read bytes ≤ t
        unit = starts.long().cumsum(1) - 1  # [B, T]: index of the unit holding byte t
        J = int(unit.max()) + 1
        index = unit.unsqueeze(-1).expand(B, T, D)
        sums = h.new_zeros(B, J, D).scatter_add(1, index, h)  # [B, J, D]
        counts = h.new_zeros(B, J).scatter_add(1, unit, torch.ones_like(h[..., 0]))  # [B, J]
        z = self.to_latent(sums / counts.clamp(min=1).unsqueeze(-1))  # [B, J, d_latent]
        for block in self.latent:
            z = block(z)
        units = self.from_latent(self.latent_norm(z))  # [B, J, D]: unit j's state has read units ≤ j
        # context[t] = state after unit(t) - 1, the last unit complete before byte t; index 0 is "no unit yet"
        shifted = torch.cat([self.no_unit.expand(B, 1, D), units], dim=1)  # [B, J + 1, D]
        context = shifted.gather(1, index)  # [B, T, D]
        before = torch.cat([self.bos.expand(B, 1, D), h[:, :-1]], dim=1)  # [B, T, D]: byte t-1's state
        d = before + context
        for block in self.decoder:
            d = block(d)
        byte_logits: torch.Tensor = self.byte_head(self.decoder_norm(d))  # [B, T, 256]
        end_logits: torch.Tensor = self.end_head(h + context).squeeze(-1)  # [B, T]
        return byte_logits, end_logits


# ------------------------------------------------------------------------------------------------------- FLOPs
def _ffn(d: int) -> int:
    return _ffn_hidden(ModelConfig(d_model=d))


def block_flops(d: int, attended: float) -> float:
    """Forward FLOPs of one block at one position: the qkv, output and SwiGLU matmuls, and attention over
    `attended` positions (QKᵀ and AV: 2 · 2 · d each)."""
    return 2 * (4 * d * d + 3 * d * _ffn(d)) + 4 * d * attended


def mean_attended(length: int, window: int | None) -> float:
    """Positions a causal (windowed) query attends to, averaged over positions 0..length-1."""
    w = length if window is None else min(window, length)
    # positions t < w attend to t + 1, later ones to w
    return (w * (w + 1) / 2 + (length - w) * w) / max(length, 1)


def flops_per_byte(cfg: PatchLMConfig, bytes_per_unit: float, *, training: bool = False) -> dict[str, float]:
    """Forward (or training: 3×) FLOPs per byte of `cfg` on units of `bytes_per_unit` bytes on average, split into
    local (encoder + decoder + heads) and latent (pooling projections + latent transformer) parts."""
    T, D = cfg.context, cfg.d_local
    a_local = mean_attended(T, cfg.local_window)
    local = (cfg.encoder_layers + cfg.decoder_layers) * block_flops(D, a_local)
    local += 2 * D * N_BYTES + 2 * (D * D + D)  # byte head; end-of-unit MLP
    units = max(T / max(bytes_per_unit, 1.0), 1.0)
    latent_unit = cfg.latent_layers * block_flops(cfg.d_latent, mean_attended(round(units), None))
    latent_unit += 2 * 2 * D * cfg.d_latent  # to_latent and from_latent
    latent = latent_unit / max(bytes_per_unit, 1.0)
    k = 3.0 if training else 1.0
    return {"total": k * (local + latent), "local": k * local, "latent": k * latent}


def match_latent_width(cfg: PatchLMConfig, bytes_per_unit: float, target_flops: float) -> PatchLMConfig:
    """`cfg` with the latent width whose forward FLOPs per byte at `bytes_per_unit` come nearest `target_flops`
    (widths are multiples of 2 × latent_heads × 4, at least one step): longer units buy a wider latent model."""
    step = 8 * cfg.latent_heads
    best, best_gap = cfg, math.inf
    for width in range(step, 64 * step + 1, step):
        trial = replace(cfg, d_latent=width)
        gap = abs(flops_per_byte(trial, bytes_per_unit)["total"] - target_flops)
        if gap < best_gap:
            best, best_gap = trial, gap
    return best
