"""A run folder's ledger: which stage made which files from which inputs, by sha256.

A stage is reused on a re-run only when its recorded options are the same, every input still
has the recorded hash, and every output still exists with the recorded hash. The ledger is
rewritten atomically after each finished stage, so an interrupted run loses at most the stage
in flight (whose own outputs are written atomically, so nothing half-written is left).
Paths inside the folder are recorded relative to it, so a run folder can be moved whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from spartan_deploy._io import sha256_file, write_json

LEDGER_NAME = "pipeline.json"
LEDGER_VERSION = 2


class Ledger:
    """Stage records kept in ``<folder>/pipeline.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LEDGER_NAME
        self.damaged = False  # the file was there but unreadable or of the wrong shape
        self._records: dict[str, Any] = self._read()
        self._hashes: dict[Path, str] = {}

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            self.damaged = True
            return {}
        if not isinstance(data, dict):  # valid JSON of the wrong shape: a list, a number
            self.damaged = True
            return {}
        stages = data.get("stages")
        if data.get("version") != LEDGER_VERSION or not _well_formed(stages):
            self.damaged = True
            return {}
        return dict(stages)

    def key(self, path: Path) -> str:
        """How a path is recorded: relative to the folder when inside it."""
        resolved = Path(path).resolve()
        try:
            return resolved.relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return str(resolved)

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
        wanted_inputs = {self.key(p): self.digest(p) for p in inputs}
        if record.get("inputs") != wanted_inputs or None in wanted_inputs.values():
            return False
        outputs = list(outputs)
        recorded_outputs = record.get("outputs", {})
        if set(recorded_outputs) != {self.key(p) for p in outputs}:
            return False
        return all(self.digest(p) == recorded_outputs[self.key(p)] for p in outputs)

    def made_by_us(self, paths: Iterable[Path]) -> set[Path]:
        """Those of ``paths`` that some stage of this ledger wrote (with the bytes it wrote,
        or since replaced by a stage run: a later run may rewrite its own files)."""
        recorded = {name for record in self._records.values()
                    for name in record.get("outputs", {})}
        return {p for p in paths if self.key(p) in recorded}

    def recorded_digest(self, path: Path) -> str | None:
        """The sha256 the ledger records for an output (None: it records none)."""
        key = self.key(path)
        return next((record["outputs"][key] for record in self._records.values()
                     if key in record.get("outputs", {})), None)

    def record(self, stage: str, inputs: Iterable[Path], options: Mapping[str, Any],
               outputs: Iterable[Path], summary: Mapping[str, Any] | None = None) -> None:
        outputs = list(outputs)
        self.forget(outputs)
        self._records[stage] = {
            "inputs": {self.key(p): self.digest(p) for p in inputs},
            "options": _plain(options),
            "outputs": {self.key(p): self.digest(p) for p in outputs},
            "summary": _plain(summary or {}),
        }
        write_json(self.path, {"version": LEDGER_VERSION, "stages": self._records})

    def summary(self, stage: str) -> dict[str, Any]:
        return dict(self._records.get(stage, {}).get("summary", {}))


def _well_formed(stages: Any) -> bool:
    """Every record a dict of the four expected mappings (anything else: rebuild)."""
    if not isinstance(stages, dict):
        return False
    for record in stages.values():
        if not isinstance(record, dict):
            return False
        for field in ("inputs", "outputs", "summary", "options"):
            if not isinstance(record.get(field), dict):
                return False
        if not all(isinstance(v, (str, type(None))) for v in
                   [*record["inputs"].values(), *record["outputs"].values()]):
            return False
    return True


def _plain(value: Any) -> Any:
    """JSON-shaped copy, so recorded and current options compare equal."""
    return json.loads(json.dumps(value, default=str))

