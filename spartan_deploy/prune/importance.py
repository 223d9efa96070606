"""Channel importance: weight magnitude (``l1``) or first-order Taylor on calibration images.

``l1`` scores a channel by every weight that is removed with it (group magnitude): each
tensor's per-channel L1 norms are divided by their mean, so a big tensor does not drown a
small one, then summed. A BatchNorm contributes its effective scale |gamma| / sqrt(var) and
the wave mixer's complex weight its modulus, since both scale the whole channel.

``taylor`` multiplies each prunable channel by a gate of value 1 at the points where removing
it acts, and scores the channel by the squared gradient of the loss with respect to its
gates, averaged over batches (first-order estimate of the loss change when it goes). Labels
are the unpruned model's own predictions, so unlabelled calibration images suffice.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spartan_deploy.model.spartan import Block, SpaRTAN, SqueezeExcite
from spartan_deploy.prune.plan import BlockScores


def _norms(t: torch.Tensor, dim: int) -> torch.Tensor:
    """L1 norm of each slice along ``dim``, divided by the mean over slices."""
    dims = [d for d in range(t.ndim) if d != dim]
    norms = t.detach().abs().sum(dim=dims).double()
    return norms / norms.mean().clamp_min(1e-12)


def _bn_scale(bn: nn.Module) -> torch.Tensor:
    scale = bn.weight.detach().abs() / torch.sqrt(bn.running_var.detach() + bn.eps)
    return _norms(scale.view(-1, 1), 0)


def _se_scores(se: SqueezeExcite) -> tuple[torch.Tensor, torch.Tensor]:
    """(score of each gated channel, score of each squeeze channel)."""
    channel = _norms(se.squeeze.weight, 1) + _norms(se.expand.weight, 0)
    squeezed = _norms(se.squeeze.weight, 0) + _norms(se.expand.weight, 1)
    return channel, squeezed


def _l1_block(block: Block) -> BlockScores:
    s, c = block.smixer, block.cmixer
    hidden = s.proj_in.weight.shape[0]
    score = _norms(s.proj_in.weight, 0) + _bn_scale(s.h_conv.norm) + _bn_scale(s.l_conv[1].norm)
    for conv in (s.h_conv.conv, s.l_conv[0].conv, s.l_conv[1].conv):
        score = score + _norms(conv.weight, 0)
        if conv.groups == 1:
            score = score + _norms(conv.weight, 1)
    h_channel, h_se = _se_scores(s.h_attn)
    l_channel, l_se = _se_scores(s.l_attn)
    out = s.proj_out.weight.detach()
    score = score + h_channel + l_channel + _norms(out[:, :hidden], 1) \
        + _norms(out[:, hidden:], 1)
    modulus = torch.linalg.vector_norm(c.complex.detach().reshape(-1, 2), dim=1)
    neck = (_norms(c.theta.weight, 0) + _norms(c.proj.weight, 0)
            + _norms(modulus.repeat_interleave(2).view(-1, 1), 0)
            + _norms(c.conv.conv.weight, 0) + _bn_scale(c.conv.norm)
            + _norms(c.proj_out.weight, 1))
    c_channel, c_se = _se_scores(c.attn)
    return BlockScores(score, neck + c_channel, h_se, l_se, c_se)


def l1_scores(model: SpaRTAN) -> list[BlockScores]:
    return [_l1_block(block) for block in model.blocks()]


class _Gates:
    """Multiplicative gates (value 1) on module outputs; their gradients are the scores."""

    def __init__(self) -> None:
        self.gates: dict[str, list[torch.Tensor]] = {}
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def add(self, name: str, module: nn.Module, channels: int) -> None:
        gate = torch.ones(channels, requires_grad=True)
        self.gates.setdefault(name, []).append(gate)
        self.handles.append(module.register_forward_hook(
            lambda _m, _i, out, g=gate: out * g.view(1, -1, 1, 1)))

    def all(self) -> list[torch.Tensor]:
        return [g for gates in self.gates.values() for g in gates]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _gate_block(gates: _Gates, index: int, block: Block) -> None:
    s, c = block.smixer, block.cmixer
    hidden, neck = s.proj_in.out_channels, c.theta.out_channels
    # Where removal acts: the hidden channel leaves proj_in and both branch outputs; a neck
    # channel leaves the SE pooling (conv output) and proj_out's input (SE output).
    for module in (s.proj_in, s.h_attn, s.l_attn):
        gates.add(f"{index}.hidden", module, hidden)
    for module in (c.conv, c.attn):
        gates.add(f"{index}.neck", module, neck)
    gates.add(f"{index}.h_se", s.h_attn.squeeze, s.h_attn.squeeze.out_channels)
    gates.add(f"{index}.l_se", s.l_attn.squeeze, s.l_attn.squeeze.out_channels)
    gates.add(f"{index}.c_se", c.attn.squeeze, c.attn.squeeze.out_channels)


def taylor_scores(model: SpaRTAN, batches: Iterable[np.ndarray]) -> list[BlockScores]:
    """Squared first-order Taylor scores over ``batches`` of preprocessed images."""
    was_training = model.training
    model.eval()  # BatchNorm statistics stay as trained: we score the deployed function
    gates = _Gates()
    for index, block in enumerate(model.blocks()):
        _gate_block(gates, index, block)
    totals: dict[str, torch.Tensor] = {}
    count = 0
    try:
        for images in batches:
            x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
            logits = model(x)
            loss = F.cross_entropy(logits, logits.detach().argmax(dim=1))
            grads = torch.autograd.grad(loss, gates.all())
            _accumulate(gates, grads, totals)
            count += 1
    finally:
        gates.remove()
        model.train(was_training)
    if count == 0:
        raise ValueError("taylor scores need at least one batch of images")
    return [BlockScores(*(totals[f"{i}.{part}"] / count for part in
                          ("hidden", "neck", "h_se", "l_se", "c_se")))
            for i in range(len(model.blocks()))]


def _accumulate(gates: _Gates, grads: tuple[torch.Tensor, ...],
                totals: dict[str, torch.Tensor]) -> None:
    position = 0
    for name, group in gates.gates.items():
        # A channel goes everywhere at once: its gate gradients add before squaring.
        summed = sum(grads[position:position + len(group)])
        position += len(group)
        square = summed.detach().double() ** 2
        totals[name] = totals.get(name, torch.zeros_like(square)) + square
