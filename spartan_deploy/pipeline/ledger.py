"""The pipeline's ledger: which stage made which files from which inputs, by sha256.

A stage is reused on a re-run only when its recorded options are the same, every input still
has the recorded hash, and every output still exists with the recorded hash. The ledger is
rewritten atomically after each finished stage, so an interrupted run loses at most the stage
in flight (whose own outputs are written atomically, so nothing half-written is left).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from spartan_deploy._io import sha256_file, write_json

LEDGER_NAME = "pipeline.json"


class Ledger:
    """Stage records kept in ``<out>/pipeline.json``."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LEDGER_NAME
        self._records: dict[str, Any] = self._read()
        self._hashes: dict[Path, str] = {}

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data.get("stages", {}) if isinstance(data, dict) else {}

    def digest(self, path: Path) -> str | None:
        """sha256 of a file, memoised for this run (files are only ever replaced whole)."""
        path = Path(path)
        if path not in self._hashes:
            if not path.is_file():
                return None
            self._hashes[path] = sha256_file(path)
        return self._hashes[path]

    def forget(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self._hashes.pop(Path(path), None)

    def is_current(self, stage: str, inputs: Iterable[Path], options: Mapping[str, Any],
                   outputs: Iterable[Path]) -> bool:
        record = self._records.get(stage)
        if not record or record.get("options") != _plain(options):
            return False
        wanted_inputs = {str(p): self.digest(p) for p in inputs}
        if record.get("inputs") != wanted_inputs or None in wanted_inputs.values():
            return False
        recorded_outputs = record.get("outputs", {})
        outputs = list(outputs)
        if set(recorded_outputs) != {str(p) for p in outputs}:
            return False
        return all(self.digest(p) == recorded_outputs[str(p)] for p in outputs)

    def record(self, stage: str, inputs: Iterable[Path], options: Mapping[str, Any],
               outputs: Iterable[Path], summary: Mapping[str, Any] | None = None) -> None:
        outputs = list(outputs)
        self.forget(outputs)
        self._records[stage] = {
            "inputs": {str(p): self.digest(p) for p in inputs},
            "options": _plain(options),
            "outputs": {str(p): self.digest(p) for p in outputs},
            "summary": _plain(summary or {}),
        }
        write_json(self.path, {"stages": self._records})

    def summary(self, stage: str) -> dict[str, Any]:
        return dict(self._records.get(stage, {}).get("summary", {}))


def _plain(value: Any) -> Any:
    """JSON-shaped copy, so recorded and current options compare equal."""
    return json.loads(json.dumps(value, default=str))
