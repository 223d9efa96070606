"""What runners and bench read from an artefact's manifest (schemas differ between stages)."""

from __future__ import annotations

from typing import Any


def manifest_input_size(manifest: dict[str, Any] | None) -> int | None:
    """The input size an artefact was made for: ``img_size``/``input_size`` at the top, in
    ``options`` or in ``data_config``."""
    manifest = manifest or {}
    for holder in (manifest, manifest.get("options") or {}, manifest.get("data_config") or {}):
        if not isinstance(holder, dict):
            continue
        for key in ("img_size", "input_size"):
            value = holder.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def manifest_source_hash(manifest: dict[str, Any] | None) -> str | None:
    """The sha256 of the checkpoint (or file) an artefact was made from, when recorded."""
    manifest = manifest or {}
    for key in ("source_sha256", "weights_sha256", "checkpoint_sha256"):
        value = manifest.get(key)
        if isinstance(value, str):
            return value
    source = manifest.get("source")
    if isinstance(source, dict) and isinstance(source.get("sha256"), str):
        return source["sha256"]
    return None
