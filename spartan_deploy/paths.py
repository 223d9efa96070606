"""Every default location in one place: bundled data (found with importlib.resources) and
the working folders commands write to.

Nothing here is located relative to the source tree, so an installed wheel and a source
checkout find the same files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from spartan_deploy.errors import ConfigError

# Where commands put what they make, relative to the working folder (git-ignored in a clone).
RUNS_DIR = Path("runs")
# The built-in dataset of every command's --data default.
DEFAULT_DATA = "digits"
BUNDLED_PACKAGE = "spartan_deploy.bundled"


def run_folder(model_name: str) -> Path:
    """``runs/<model>/``: the default output folder of every stage for one model."""
    return RUNS_DIR / model_name


def bundled(name: str) -> Path:
    """A folder or file shipped in the package (``models``, ``calib``), as a real path."""
    entry = resources.files(BUNDLED_PACKAGE).joinpath(name)
    # Installed from a wheel or a checkout, the package is a folder on disk; a zipped
    # install would give a non-Path traversable, and nothing here reads from zips.
    if not isinstance(entry, Path):
        raise ConfigError(f"bundled data {name!r} is not on the file system ({entry}); "
                          "install spartan-deploy as a regular (unzipped) package")
    return entry


def bundled_models_dir() -> Path:
    """The bundled model YAMLs, the default checkpoint and its card."""
    return bundled("models")


def bundled_calib_dir() -> Path:
    """The bundled calibration images (digits from the training split) and manifest."""
    return bundled("calib")


def default_calib(given: Path | None) -> Path:
    """``--calib``: the folder the user named, else the bundled calibration set."""
    return Path(given) if given is not None else bundled_calib_dir()
