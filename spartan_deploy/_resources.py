"""Memory checks made before allocating: a batch of images or of activations that cannot fit
is refused with one line naming the value to lower, instead of a MemoryError, the kernel's
OOM killer or a machine that swaps until it seems to hang.

Estimates are deliberately low (they count only what certainly must be live at once), so a
run that would fit is never refused; what they catch is the absurd (a batch of 65536 at
4096 pixels), not the borderline.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from spartan_deploy.errors import ResourceError

if TYPE_CHECKING:
    from spartan_deploy.model.config import ModelConfig

FLOAT_BYTES = 4
# Feature maps of one block's widest tensor (the wave mixer's neck) alive together during
# an inference forward pass (input, two projections, their product, the modulated result).
_LIVE_NECK_MAPS = 4
# Training keeps every block's activations for the backward pass; per block, about this
# many neck-sized maps are saved.
_SAVED_NECK_MAPS_PER_BLOCK = 6
_GIB = 1 << 30


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup limit."""
    free = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    limit = _cgroup_room()
    if free is None:
        return limit
    return free if limit is None else min(free, limit)


def _cgroup_room() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            return max(0, int(limit) - used)
    return None


def ensure_fits(need: int, what: str, advice: str) -> None:
    """Raise ResourceError when ``need`` bytes exceed the memory available now."""
    room = available_memory()
    if room is not None and need > room:
        raise ResourceError(f"{what} needs about {_size(need)} of memory but only "
                            f"{_size(room)} is available; {advice}")


def image_bytes(count: int, img_size: int) -> int:
    """A float32 (count, 3, img_size, img_size) array."""
    return count * 3 * img_size * img_size * FLOAT_BYTES


def activation_bytes(batch: int, img_size: int, config: ModelConfig | None = None,
                     training: bool = False) -> int:
    """A lower estimate of the activation memory of one forward (and backward) pass."""
    from spartan_deploy.model.config import ModelConfig

    config = config or ModelConfig()
    widths = config.resolved_block_widths()
    total = peak = 0
    for index, block in enumerate(widths):
        stage = config.block_stage(index)
        side = max(1, img_size >> (stage + 2))  # stem /4, then /2 per stage
        maps = block.neck * side * side
        peak = max(peak, maps * _LIVE_NECK_MAPS)
        total += maps * _SAVED_NECK_MAPS_PER_BLOCK
    per_image = (total if training else peak) * FLOAT_BYTES
    return batch * per_image + image_bytes(batch, img_size)


def parameter_count(config: ModelConfig) -> int:
    """Parameters of a SpaRTAN of ``config``, from its widths (convolutions and linear
    layers; norms and scales, a small fraction, are left out)."""
    total = 9 * 3 * config.init_dim // 2 + 9 * config.init_dim * config.init_dim // 2
    for index, w in enumerate(config.resolved_block_widths()):
        stage = config.block_stage(index)
        width = config.stage_widths[stage]
        per_group = w.hidden if stage < 2 else 1  # full convolutions, then depthwise
        total += 2 * width * w.hidden + 3 * 9 * w.hidden * per_group + width * width
        total += 2 * width * w.neck + 9 * w.neck * (w.neck // w.cmixer_groups)
        total += 2 * w.neck * w.c_se + w.neck * width
    widths = config.stage_widths
    total += sum(4 * a * b for a, b in zip(widths, widths[1:]))  # 2x2 downsamples
    return total + widths[-1] * config.num_classes


def check_model(config: ModelConfig) -> None:
    """Refuse building a model whose parameters (and one copy, as loading makes) cannot fit."""
    count = parameter_count(config)
    ensure_fits(2 * count * FLOAT_BYTES, f"a SpaRTAN with about {count:,} parameters",
                "use smaller dims, layer_depths or expand_ratios")


def check_batch(batch: int, img_size: int, config: ModelConfig | None = None,
                training: bool = False, option: str = "--batch") -> None:
    """Refuse a batch whose images and activations cannot fit in memory."""
    need = activation_bytes(batch, img_size, config, training)
    ensure_fits(need, f"{option} {batch} at {img_size}x{img_size} pixels",
                f"lower {option} or --img-size")


def check_images(count: int, img_size: int, what: str, option: str = "--limit") -> None:
    """Refuse decoding ``count`` images into memory at once when they cannot fit."""
    ensure_fits(image_bytes(count, img_size), f"{what} ({count} images at {img_size}x"
                f"{img_size} pixels, held in memory)", f"lower {option} or --img-size")


def _size(count: int) -> str:
    if count >= _GIB:
        return f"{count / _GIB:,.1f} GiB"
    return f"{count / (1 << 20):,.0f} MiB"
