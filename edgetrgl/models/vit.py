"""Small vision transformers (Dosovitskiy et al., 2021) for module-wise training.

Stem: patch embedding (a conv with kernel = stride = patch size) flattened to (B, N, D) tokens plus
a learned position embedding. No cls token: the token head mean-pools. Blocks are pre-norm
transformer blocks that report two residues, the attention branch and the MLP branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgetrgl.blocks import ResidualBlock
from edgetrgl.errors import UserError
from edgetrgl.models._checks import positive_float, positive_int
from edgetrgl.models.base import BlockNet
from edgetrgl.models.registry import register_model
from edgetrgl.transport import residue_tail

DEFAULT_PATCH_SIZE = 4


class PatchEmbed(nn.Module):
    """(B, C, H, W) image -> (B, N, D) patch tokens with a learned position embedding."""

    def __init__(self, in_channels: int, dim: int, image_size: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        num_patches = (image_size // patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        x_BND = self.proj(x_BCHW).flatten(2).transpose(1, 2)
        return x_BND + self.pos_embed


class Attention(nn.Module):
    """Multi-head self-attention on (B, N, D), via scaled_dot_product_attention (fused kernels)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x_BND: torch.Tensor) -> torch.Tensor:
        return self.proj(self.mix(x_BND))

    def mix(self, x_BND: torch.Tensor) -> torch.Tensor:
        """The heads' outputs, concatenated: everything but the output projection."""
        B, N, D = x_BND.shape
        # (B, N, 3, heads, D/heads) -> three (B, heads, N, D/heads) tensors
        q, k, v = self.qkv(x_BND).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(B, N, D)


class TransformerBlock(ResidualBlock):
    """Pre-norm block: x + attn(ln1(x)), then + mlp(ln2(x)); residues [attention, MLP]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = max(1, round(dim * mlp_ratio))
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward_residues(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # the residues' last layers (output projections) go through residue_tail: see transport.py
        a = residue_tail(self.attn.proj, self.attn.mix(self.ln1(x)))
        x = x + a
        m = residue_tail(self.mlp[-1], self.mlp[:-1](self.ln2(x)))
        return x + m, [a, m]


def _pick_patch_size(name: str, image_size: int, patch_size: int | None) -> int:
    """Return the patch size: ``patch_size`` if given (it must divide), else the divisor nearest 4."""
    if patch_size is not None:
        patch_size = positive_int(name, "patch_size", patch_size)
        if image_size % patch_size:
            divisors = [d for d in range(1, image_size + 1) if image_size % d == 0]
            raise UserError(
                f"{name}: patch_size {patch_size} does not divide image_size {image_size}; "
                f"try one of {', '.join(map(str, divisors))}"
            )
        return patch_size
    divisors = [d for d in range(1, image_size + 1) if image_size % d == 0]
    # Nearest to the default; on a tie prefer the larger patch (fewer tokens, cheaper attention).
    return min(divisors, key=lambda d: (abs(d - DEFAULT_PATCH_SIZE), -d))


def build_vit(
    name: str,
    in_channels: int,
    image_size: int,
    patch_size: int | None,
    dim: int,
    depth: int,
    heads: int,
    mlp_ratio: float,
) -> BlockNet:
    """Build a ViT as stem (patch embedding) + ``depth`` transformer blocks on (B, N, dim) tokens."""
    dim = positive_int(name, "dim", dim)
    depth = positive_int(name, "depth", depth)
    heads = positive_int(name, "heads", heads)
    mlp_ratio = positive_float(name, "mlp_ratio", mlp_ratio)
    if dim % heads:
        raise UserError(f"{name}: dim {dim} must be divisible by heads {heads}")
    patch_size = _pick_patch_size(name, image_size, patch_size)
    stem = PatchEmbed(in_channels, dim, image_size, patch_size)
    blocks: list[nn.Module] = [TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)]
    net = BlockNet(stem=stem, blocks=blocks, head_kind="token", name=name)
    net.extra["patch_size"] = patch_size
    return net


@register_model("vit_tiny")
def vit_tiny(
    in_channels: int,
    num_classes: int,
    image_size: int,
    *,
    patch_size: int | None = None,
    dim: int = 192,
    depth: int = 6,
    heads: int = 3,
    mlp_ratio: float = 4.0,
) -> BlockNet:
    """Tiny ViT: dim 192, 6 pre-norm blocks, 3 heads, patch 4 (or the divisor of image_size nearest 4)."""
    return build_vit("vit_tiny", in_channels, image_size, patch_size, dim, depth, heads, mlp_ratio)


@register_model("vit_small")
def vit_small(
    in_channels: int,
    num_classes: int,
    image_size: int,
    *,
    patch_size: int | None = None,
    dim: int = 384,
    depth: int = 12,
    heads: int = 6,
    mlp_ratio: float = 4.0,
) -> BlockNet:
    """Small ViT (DeiT-S sizes): dim 384, 12 pre-norm blocks, 6 heads, patch 4 (or nearest divisor)."""
    return build_vit("vit_small", in_channels, image_size, patch_size, dim, depth, heads, mlp_ratio)
