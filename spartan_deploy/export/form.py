"""The export form: an inference-only transformation of any trained SpaRTAN.

It is built FROM a training-form model (never written by hand a second time), so pruned
widths, official checkpoints and any variant go through the same code. What changes:

- eval only: stochastic depth is gone, BatchNorm is folded into the convolution before it;
- the wave mixer's complex modulation is real arithmetic on (real, imag) channel pairs: a
  2x2 map per pair. By default (``PairMode.AUTO``) every conv that carries it is grouped in
  blocks of 16 channels, the width of ONNX Runtime's blocked (NCHWc) layout on AVX-512 (AVX2
  uses 8, which divides 16) and of OpenVINO's blocked layouts: the map is folded into the 3x3
  conv (stages 3-4, zeros between the original 2-channel groups) or is a 16-wide grouped 1x1
  conv before the depthwise conv (stages 1-2). Convs grouped in 2 channels fall out of both
  runtimes' fast kernels (benchmarks/results/cpu.md); no complex dtype, no Transpose/Reshape;
- exact algebraic folds: layer scales into ``proj_out``, the first norm's affine and the
  feature-decomposition factor ``1 + gamma`` into ``proj_in``;
- the one-group norm is written as plain reductions (ReduceMean arithmetic), which every
  ONNX runtime and the TensorRT parser accept at any opset.

Folds are computed in float64 and stored as float32, so the export form matches the
training form to float32 rounding.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from spartan_deploy.errors import ExportError
from spartan_deploy.export.options import DEFAULT_PAIR_MODE, PairMode
from spartan_deploy.model.spartan import (
    Block, CMixer, ConvNormAct, SMixer, SpaRTAN, SqueezeExcite)

# Below this |1 + gamma| the feature-decomposition factor is not folded into proj_in
# (dividing by it would lose precision); the block keeps the explicit form instead.
_MIN_FOLD_FACTOR = 0.05


# Group width of the convs that carry the pair map under PairMode.AUTO (see the docstring).
BLOCK_WIDTH = 16


def _fold_bn(conv: nn.Conv2d, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias (float64) of ``norm(conv(x))``."""
    weight = conv.weight.detach().double()
    bias = (conv.bias.detach().double() if conv.bias is not None
            else torch.zeros(conv.out_channels, dtype=torch.float64))
    if isinstance(norm, nn.BatchNorm2d):
        std = (norm.running_var.detach().double() + norm.eps).sqrt()
        scale = norm.weight.detach().double() / std
        weight = weight * scale.view(-1, 1, 1, 1)
        bias = (bias - norm.running_mean.detach().double()) * scale + norm.bias.detach().double()
    elif not isinstance(norm, nn.Identity):
        raise ExportError(f"cannot fold {type(norm).__name__} into a convolution")
    return weight, bias


def _make_conv(template: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None,
               groups: int | None = None) -> nn.Conv2d:
    """A Conv2d with ``template``'s geometry and the given (float64) parameters."""
    groups = template.groups if groups is None else groups
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], template.kernel_size,
                     template.stride, template.padding, template.dilation, groups,
                     bias=bias is not None)
    conv.weight.data.copy_(weight.float())
    if bias is not None:
        conv.bias.data.copy_(bias.float())
    return conv


def _fused(unit: ConvNormAct) -> nn.Sequential:
    """conv (+ folded BatchNorm) followed by a copy of the unit's activation."""
    weight, bias = _fold_bn(unit.conv, unit.norm)
    layers: list[nn.Module] = [_make_conv(unit.conv, weight, bias)]
    if not isinstance(unit.act, nn.Identity):
        layers.append(copy.deepcopy(unit.act))
    return nn.Sequential(*layers)


def _conv_params(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    bias = (conv.bias.detach().double() if conv.bias is not None
            else torch.zeros(conv.out_channels, dtype=torch.float64))
    return conv.weight.detach().double(), bias


class OneGroupNorm(nn.Module):
    """GroupNorm with one group as reductions; ``affine=False`` when folded downstream."""

    def __init__(self, norm: nn.GroupNorm, affine: bool) -> None:
        super().__init__()
        self.eps = norm.eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(norm.weight.detach().clone().view(1, -1, 1, 1))
            self.bias = nn.Parameter(norm.bias.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
        var = (centred * centred).mean(dim=(1, 2, 3), keepdim=True)
        y = centred * torch.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y


class ExportSE(nn.Module):
    """Squeeze-excitation, unchanged in function (kept as its own small module)."""

    def __init__(self, se: SqueezeExcite) -> None:
        super().__init__()
        self.squeeze = copy.deepcopy(se.squeeze)
        self.expand = copy.deepcopy(se.expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(F.relu(self.squeeze(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class ExportSMixer(nn.Module):
    """Spatial mixer with the norm affine, ``1 + gamma`` and the layer scale folded in."""

    def __init__(self, mixer: SMixer, norm: nn.GroupNorm, scale: torch.Tensor) -> None:
        super().__init__()
        weight, bias = _conv_params(mixer.proj_in)
        # proj_in(w * xhat + b) = (W diag(w)) xhat + (W b + bias)
        gn_w, gn_b = norm.weight.detach().double(), norm.bias.detach().double()
        bias = bias + weight[:, :, 0, 0] @ gn_b
        weight = weight * gn_w.view(1, -1, 1, 1)
        gamma = mixer.gamma.detach().double().view(-1)
        factor = 1.0 + gamma
        self.folded = bool(factor.abs().min() >= _MIN_FOLD_FACTOR)
        if self.folded:
            # x + g (x - mean x) = x1 - g / (1 + g) * mean(x1) with x1 = (1 + g) x
            weight, bias = weight * factor.view(-1, 1, 1, 1), bias * factor
            self.register_buffer("coef", (gamma / factor).float().view(1, -1, 1, 1))
        else:
            self.register_buffer("coef", gamma.float().view(1, -1, 1, 1))
        self.proj_in = _make_conv(mixer.proj_in, weight, bias)
        self.h_conv = _fused(mixer.h_conv)
        self.h_attn = ExportSE(mixer.h_attn)
        self.l_conv = nn.Sequential(*(_fused(unit) for unit in mixer.l_conv))
        self.l_attn = ExportSE(mixer.l_attn)
        self.proj_out = _scaled_conv(mixer.proj_out, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(x)
        if self.folded:
            x = x - self.coef * x.mean(dim=(2, 3), keepdim=True)
        else:
            x = x + self.coef * (x - x.mean(dim=(2, 3), keepdim=True))
        high = self.h_attn(self.h_conv(x))
        low = self.l_attn(self.l_conv(x))
        return self.proj_out(torch.cat([high, low], dim=1))


def _scaled_conv(conv: nn.Conv2d, scale: torch.Tensor) -> nn.Conv2d:
    """``scale * conv(x)`` as one conv (the block's layer scale folded into proj_out)."""
    weight, bias = _conv_params(conv)
    s = scale.detach().double().view(-1)
    return _make_conv(conv, weight * s.view(-1, 1, 1, 1), bias * s)


def pair_matrix(complex_weight: torch.Tensor) -> torch.Tensor:
    """The (N, N) real matrix of the per-pair complex multiplication (float64)."""
    pairs = complex_weight.detach().double().reshape(-1, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    n = 2 * pairs.shape[0]
    matrix = torch.zeros(n, n, dtype=torch.float64)
    even = torch.arange(0, n, 2)
    # (u, v) -> (a u - b v, b u + a v): rows are outputs, columns inputs
    matrix[even, even], matrix[even, even + 1] = a, -b
    matrix[even + 1, even], matrix[even + 1, even + 1] = b, a
    return matrix


def _grouped(dense: torch.Tensor, groups: int) -> torch.Tensor:
    """The diagonal blocks of a block-diagonal (O, I, k, k) weight as a grouped weight."""
    out_ch, in_ch = dense.shape[:2]
    idx = torch.arange(groups)
    blocks = dense.reshape(groups, out_ch // groups, groups, in_ch // groups, *dense.shape[2:])
    return blocks[idx, :, idx].reshape(out_ch, in_ch // groups, *dense.shape[2:])


def _regroup(weight: torch.Tensor, groups: int, new_groups: int) -> torch.Tensor:
    """The same conv with ``new_groups`` groups (a divisor of ``groups``): each new group
    holds whole old groups, with zero weights between them (block-diagonal)."""
    per_new = groups // new_groups  # old groups inside one new group
    out_ch, per_old = weight.shape[:2]
    kernel = weight.shape[2:]
    old = weight.reshape(new_groups, per_new, out_ch // groups, per_old, *kernel)
    block = weight.new_zeros(new_groups, per_new, out_ch // groups, per_new, per_old, *kernel)
    for i in range(per_new):
        block[:, i, :, i] = old[:, i]
    return block.reshape(out_ch, per_new * per_old, *kernel)


def _fold_pair_matrix(weight: torch.Tensor, groups: int, matrix: torch.Tensor,
                      new_groups: int) -> torch.Tensor:
    """Grouped weight of ``conv(M x)`` with ``new_groups`` groups (each holds whole old groups
    and whole pairs, so ``W M`` is block-diagonal at that grouping)."""
    block = _regroup(weight, groups, new_groups)
    out_ch, width = block.shape[:2]
    kernel = block.shape[2:]
    idx = torch.arange(new_groups)
    m_blocks = matrix.reshape(new_groups, width, new_groups, width)[idx, :, idx]
    folded = torch.einsum("gopkl,gpq->goqkl",
                          block.reshape(new_groups, out_ch // new_groups, width, *kernel),
                          m_blocks)
    return folded.reshape(out_ch, width, *kernel)


def pair_fold_groups(neck: int, groups: int) -> int:
    """Groups of the 3x3 conv after folding the pair map into it.

    The folded conv must see both channels of every pair inside one group: groups made of
    whole pairs stay as they are; odd-sized groups are merged two by two (an even neck
    split into odd-sized groups always has an even number of them).
    """
    return groups if (neck // groups) % 2 == 0 else groups // 2


@dataclasses.dataclass(frozen=True)
class PairPlan:
    """Where one block's pair map goes: folded into the 3x3 conv (then ``pair_groups`` is
    None) or a grouped 1x1 conv of ``pair_groups`` groups before it; ``conv_groups``: the
    groups of the 3x3 conv as exported."""

    conv_groups: int
    pair_groups: int | None


def plan_pair(mode: PairMode, neck: int, groups: int) -> PairPlan:
    """The placement of the pair map for a 3x3 conv of ``groups`` groups over ``neck``."""
    mode = PairMode(mode)
    if mode is PairMode.AUTO:
        blocked = _blocked_plan(neck, groups)
        if blocked is not None:
            return blocked
        mode = PairMode.GROUPED
    if mode is PairMode.CONV1X1:
        return PairPlan(groups, neck // 2)
    target = pair_fold_groups(neck, groups)
    if mode is PairMode.GROUPED and target != groups:
        # regrouping a depthwise conv costs more than the 1x1 pair conv saves
        return PairPlan(groups, neck // 2)
    return PairPlan(target, None)


def _blocked_plan(neck: int, groups: int) -> PairPlan | None:
    """16-channel groups: a 1x1 pair conv before a depthwise conv (folding into the 3x3
    conv there measured slower), else the pair map folded into the regrouped 3x3 conv; None
    where the widths do not allow it (pruned necks that are not multiples of 16)."""
    if neck % BLOCK_WIDTH:
        return None
    if groups == neck:
        return PairPlan(groups, neck // BLOCK_WIDTH)
    if BLOCK_WIDTH % (neck // pair_fold_groups(neck, groups)):
        return None
    return PairPlan(neck // BLOCK_WIDTH, None)


class ExportCMixer(nn.Module):
    """Wave mixer: real-valued superposition and modulation, layer scale in proj_out."""

    def __init__(self, mixer: CMixer, scale: torch.Tensor, mode: PairMode) -> None:
        super().__init__()
        self.theta = copy.deepcopy(mixer.theta)
        self.proj = copy.deepcopy(mixer.proj)
        self.pair: nn.Module = nn.Identity()
        matrix = pair_matrix(mixer.complex)
        unit = mixer.conv
        weight, bias = _fold_bn(unit.conv, unit.norm)
        n, groups = unit.conv.out_channels, unit.conv.groups
        plan = plan_pair(mode, n, groups)
        if plan.pair_groups is None:
            # conv(M f) has weight W M; M only mixes within pairs, so W M stays grouped.
            folded = _fold_pair_matrix(weight, groups, matrix, plan.conv_groups)
            conv = _make_conv(unit.conv, folded, bias, plan.conv_groups)
        else:
            self.pair = _make_conv(nn.Conv2d(n, n, 1, groups=plan.pair_groups, bias=False),
                                   _grouped(matrix.view(n, n, 1, 1), plan.pair_groups), None)
            conv = _make_conv(unit.conv, _regroup(weight, groups, plan.conv_groups), bias,
                              plan.conv_groups)
        self.conv = nn.Sequential(conv, copy.deepcopy(unit.act))
        self.attn = ExportSE(mixer.attn)
        self.proj_out = _scaled_conv(mixer.proj_out, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = F.gelu(self.theta(x))
        wt = self.proj(x) * t
        k = x.argmax(dim=1, keepdim=True)
        # gather(w * t, k) == w[k] * t[k]: one GatherElements instead of two
        f = wt + torch.gather(wt, 1, k)
        return self.proj_out(self.attn(self.conv(self.pair(f))))


class ExportBlock(nn.Module):
    """Residual block; the first norm's affine lives in proj_in, layer scales in proj_out."""

    def __init__(self, block: Block, mode: PairMode) -> None:
        super().__init__()
        _check_norm(block.norm_1)
        _check_norm(block.norm_2)
        self.norm_1 = OneGroupNorm(block.norm_1, affine=False)
        self.smixer = ExportSMixer(block.smixer, block.norm_1, block.scale_1)
        self.norm_2 = OneGroupNorm(block.norm_2, affine=True)
        self.cmixer = ExportCMixer(block.cmixer, block.scale_2, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.smixer(self.norm_1(x))
        return x + self.cmixer(self.norm_2(x))


def _check_norm(norm: nn.Module) -> None:
    if not isinstance(norm, nn.GroupNorm) or norm.num_groups != 1 or not norm.affine:
        raise ExportError(f"expected a one-group affine GroupNorm, found {norm!r}")


class ExportSpaRTAN(nn.Module):
    """The inference-only SpaRTAN produced by :func:`to_export_form`."""

    def __init__(self, model: SpaRTAN, mode: PairMode) -> None:
        super().__init__()
        self.config = model.config
        self.pair_mode = mode
        self.conv = nn.Sequential(*(_fused(unit) for unit in model.conv))
        self.layers = nn.Sequential(*(
            ExportBlock(m, mode) if isinstance(m, Block) else _fused(m) for m in model.layers))
        self.linear = copy.deepcopy(model.linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.conv(x))
        return self.linear(x.mean(dim=(2, 3)))




@torch.no_grad()
def to_export_form(model: SpaRTAN, pair_mode: PairMode = DEFAULT_PAIR_MODE) -> ExportSpaRTAN:
    """The export form of a trained SpaRTAN (the input model is left untouched)."""
    if not isinstance(model, SpaRTAN):
        raise ExportError(f"to_export_form needs a SpaRTAN model, got {type(model).__name__}")
    bad = next((n for n, p in model.state_dict().items()
                if p.is_floating_point() and not torch.isfinite(p).all()), None)
    if bad is not None:
        raise ExportError(f"parameter {bad!r} holds NaN or infinite values; cannot export")
    form = ExportSpaRTAN(model, PairMode(pair_mode)).eval()
    for param in form.parameters():
        param.requires_grad_(False)
    return form
