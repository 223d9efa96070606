"""SpaRTAN in its training form: the official module tree, parameter names and initialisation.

Order follows timm: building blocks, mixers, block, the model, the checkpoint filter, the
variant constructor. The wave mixer keeps its complex-valued modulation here (this is the form
people train and fine-tune); ``spartan_deploy.export`` turns it into real arithmetic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spartan_deploy.model.config import BlockWidths, ModelConfig

NORM_EPS = 1e-6
LAYER_SCALE_INIT = 1e-5


class ConvNormAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> activation; ``norm=False`` leaves a plain conv."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, norm: bool = True,
                 act: type[nn.Module] | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation, groups,
                              bias=False)
        self.norm = nn.BatchNorm2d(out_ch, eps=NORM_EPS) if norm else nn.Identity()
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Channel gate: avg-pool, 1x1 squeeze, ReLU, 1x1 expand, sigmoid, multiply."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        gate = self.expand(F.relu(self.squeeze(gate)))
        return x * torch.sigmoid(gate)


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per sample while training."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


class LayerNorm2d(nn.GroupNorm):
    """The official "LayerNorm": one group, normalising C, H and W of each sample together."""

    def __init__(self, channels: int) -> None:
        super().__init__(1, channels, eps=NORM_EPS)


class SMixer(nn.Module):
    """Spatial mixer: feature decomposition, then high- and low-frequency conv branches."""

    def __init__(self, width: int, widths: BlockWidths, depthwise: bool) -> None:
        super().__init__()
        hidden = widths.hidden
        groups = hidden if depthwise else 1
        self.proj_in = nn.Conv2d(width, hidden, 1)
        self.gamma = nn.Parameter(torch.full((1, hidden, 1, 1), LAYER_SCALE_INIT))
        self.h_conv = ConvNormAct(hidden, hidden, 3, padding=1, groups=groups, act=nn.GELU)
        self.h_attn = SqueezeExcite(hidden, widths.h_se)
        self.l_conv = nn.Sequential(
            ConvNormAct(hidden, hidden, 3, padding=2, dilation=2, groups=groups, norm=False),
            ConvNormAct(hidden, hidden, 3, padding=2, dilation=2, groups=groups, act=nn.GELU),
        )
        self.l_attn = SqueezeExcite(hidden, widths.l_se)
        self.proj_out = nn.Conv2d(2 * hidden, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(x)
        x = x + self.gamma * (x - x.mean(dim=(2, 3), keepdim=True))
        high = self.h_attn(self.h_conv(x))
        low = self.l_attn(self.l_conv(x))
        return self.proj_out(torch.cat([high, low], dim=1))


def superpose(w: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``w * t + w[k] * t[k]`` with k the argmax over the input channels of x, per pixel."""
    k = x.argmax(dim=1, keepdim=True)
    return w * t + torch.gather(w, 1, k) * torch.gather(t, 1, k)


class CMixer(nn.Module):
    """Wave channel mixer: superposition, complex modulation, grouped conv, SE, projection."""

    def __init__(self, width: int, widths: BlockWidths) -> None:
        super().__init__()
        neck = widths.neck
        self.complex = nn.Parameter(torch.randn(1, 1, 1, neck // 2, 2))
        self.theta = nn.Conv2d(width, neck, 1)
        self.proj = nn.Conv2d(width, neck, 1)
        self.conv = ConvNormAct(neck, neck, 3, padding=1, groups=widths.cmixer_groups,
                                act=nn.GELU)
        self.attn = SqueezeExcite(neck, widths.c_se)
        self.proj_out = nn.Conv2d(neck, width, 1)

    def modulate(self, f: torch.Tensor) -> torch.Tensor:
        """Multiply each (real, imag) channel pair by its complex weight, in float32."""
        b, n, h, w = f.shape
        pairs = f.float().permute(0, 2, 3, 1).reshape(b, h, w, n // 2, 2).contiguous()
        product = torch.view_as_complex(pairs) * torch.view_as_complex(self.complex.float())
        out = torch.view_as_real(product).reshape(b, h, w, n).permute(0, 3, 1, 2)
        return out.to(f.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = F.gelu(self.theta(x))
        w = self.proj(x)
        f = self.modulate(superpose(w, t, x))
        return self.proj_out(self.attn(self.conv(f)))


class Block(nn.Module):
    """Pre-norm residual block with layer scale and stochastic depth."""

    def __init__(self, width: int, widths: BlockWidths, stage: int, drop_path: float) -> None:
        super().__init__()
        self.norm_1 = LayerNorm2d(width)
        self.smixer = SMixer(width, widths, depthwise=stage >= 2)
        self.scale_1 = nn.Parameter(torch.full((1, width, 1, 1), LAYER_SCALE_INIT))
        self.norm_2 = LayerNorm2d(width)
        self.cmixer = CMixer(width, widths)
        self.scale_2 = nn.Parameter(torch.full((1, width, 1, 1), LAYER_SCALE_INIT))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.scale_1 * self.smixer(self.norm_1(x)))
        return x + self.drop_path(self.scale_2 * self.cmixer(self.norm_2(x)))


def downsample(in_ch: int, out_ch: int) -> ConvNormAct:
    """Between stages: 2x2 conv stride 2, BatchNorm, SiLU."""
    return ConvNormAct(in_ch, out_ch, 2, stride=2, act=nn.SiLU)


class SpaRTAN(nn.Module):
    """SpaRTAN: stem, one flat ``layers`` sequence (blocks and downsamples), pooled linear head."""

    def __init__(self, config: ModelConfig) -> None:
        from spartan_deploy._resources import check_model

        check_model(config)  # an in-range but huge config: one line, not an allocator crash
        super().__init__()
        self.config = config
        widths = config.stage_widths
        self.conv = nn.Sequential(
            ConvNormAct(3, widths[0] // 2, 3, stride=2, padding=1, act=nn.GELU),
            # DESIGN.md says no activation here; the official code (and its logits in
            # shared/fixtures) apply GELU, and parity with the official model wins.
            ConvNormAct(widths[0] // 2, widths[0], 3, stride=2, padding=1, act=nn.GELU),
        )
        self.layers = nn.Sequential(*self._build_layers(config))
        self.linear = nn.Linear(widths[-1], config.num_classes)
        self.apply(_init_weights)

    @staticmethod
    def _build_layers(config: ModelConfig) -> list[nn.Module]:
        layers: list[nn.Module] = []
        block_widths = config.resolved_block_widths()
        index = 0
        for stage, depth in enumerate(config.layer_depths):
            width = config.stage_widths[stage]
            for _ in range(depth):
                # The official key ``dropout`` is the stochastic-depth rate, not head dropout.
                rate = config.dropout * index / config.num_blocks
                layers.append(Block(width, block_widths[index], stage, rate))
                index += 1
            if stage < config.num_layer - 1:
                layers.append(downsample(width, config.stage_widths[stage + 1]))
        return layers

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.conv(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def blocks(self) -> list[Block]:
        """The residual blocks in order (downsamples left out)."""
        return [m for m in self.layers if isinstance(m, Block)]


def _init_weights(module: nn.Module) -> None:
    """Official initialisation: He-normal on fan-out for convs, small normal for the head."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        fan_out //= module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def filter_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP (``module.``) and torch.compile (``_orig_mod.``) prefixes, in any nesting."""
    cleaned = {}
    for key, value in state_dict.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        cleaned[key] = value
    return cleaned


def create_model(config: ModelConfig) -> SpaRTAN:
    """Build a SpaRTAN with official initialisation for any configuration."""
    return SpaRTAN(config)
