"""Child process that runs Model Optimizer's ONNX INT8 PTQ (see backends.quantize_tensorrt).

Usage: ``python -m spartan_deploy.quantize._modelopt_worker SPEC.json``. The activation
scales come from the TensorRT calibration cache named in the spec; the one sample image
only feeds Model Optimizer's own shape probes (its ranges are replaced by the cache).
Exit status 0 on success; otherwise the last stderr line says why, and an operating-system
refusal (full disk, no memory) is also written as a marked JSON line, so the parent can
report it as its own. SIGTERM (sent by the parent when it is interrupted) ends the worker
through the same cleanup as Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from pathlib import Path


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    import numpy as np
    from modelopt.onnx.quantization import quantize

    work = Path(spec["workdir"])
    # Model Optimizer writes intermediate files beside its input: give it a private copy.
    source = work / "source.onnx"
    shutil.copyfile(spec["source"], source)
    sample = np.load(spec["sample"])
    shape = "x".join(str(d) for d in sample.shape)
    # Names are matched as regular expressions by Model Optimizer: escape and anchor them.
    patterns = [re.escape(name) + "$" for name in spec["exclude"]]
    quantize(
        str(source), quantize_mode="int8", calibration_data={spec["input_name"]: sample},
        calibration_shapes=f"{spec['input_name']}:{shape}", calibration_method="max",
        calibration_cache_path=spec["cache"], calibration_eps=["cpu"],
        nodes_to_exclude=patterns or None, high_precision_dtype="fp32",
        output_path=spec["output"], log_level="ERROR")
    return 0


FAILURE_MARK = "spartan-failure:"


def _report_failure(err: BaseException) -> None:
    """Say on stderr what the operating system refused, in a line the parent parses (stderr,
    not a file: a full disk may be the very refusal)."""
    from spartan_deploy.errors import system_error

    if isinstance(err, MemoryError):
        record = {"kind": "memory", "message": str(err)}
    elif isinstance(err, OSError):
        record = {"kind": "os", "errno": err.errno, "strerror": err.strerror,
                  "filename": None if err.filename is None else str(err.filename),
                  "filename2": None if err.filename2 is None else str(err.filename2)}
    elif system_error(err) is not None:  # e.g. an allocator's RuntimeError
        record = {"kind": "memory", "message": str(err)}
    else:
        return
    print(FAILURE_MARK + json.dumps(record), file=sys.stderr)


def _entry() -> int:
    from spartan_deploy._signals import exit_code, received, terminate_as_interrupt

    logging.basicConfig(level=logging.ERROR)
    try:
        with terminate_as_interrupt():
            return main(sys.argv[1])
    except KeyboardInterrupt as err:
        return exit_code(err)
    except Exception as err:  # reported to the parent as one line
        if received() is not None:  # the signal's exception, turned into another
            return exit_code(received())
        text = str(err).strip().splitlines()
        print(f"{type(err).__name__}: {text[0] if text else ''}", file=sys.stderr)
        _report_failure(err)
        return 1


if __name__ == "__main__":
    sys.exit(_entry())
