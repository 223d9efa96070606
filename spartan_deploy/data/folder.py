"""Image folders: class sub-folders (ImageNet val layout) or a flat folder of unlabelled images.

Only file names are listed here; images are decoded lazily by the dataset's stream.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PIL import Image

from spartan_deploy.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Split names that select a sub-folder when a folder holds only split sub-folders.
_SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val", "validation"),
                  "val": ("val", "validation", "test")}
_SPLIT_NAMES = {"train", "test", "val", "validation"}
# Errors Pillow raises for files that are not images, truncated or otherwise broken.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """The images of a folder in a fixed order, with labels when it has class sub-folders."""

    root: Path
    files: tuple[Path, ...]
    labels: tuple[int, ...] | None
    class_names: tuple[str, ...]


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and \
        not path.name.startswith(".")


def list_folder(folder: str | Path, split: str = "all") -> FolderListing:
    """List a folder: sorted class sub-folders give labels 0..K-1; flat files give none."""
    root = _split_root(_existing_folder(folder), split)
    subdirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name)
    top_files = sorted((p for p in root.iterdir() if is_image_file(p)), key=lambda p: p.name)
    class_files = [sorted((p for p in d.rglob("*") if is_image_file(p)), key=str)
                   for d in subdirs]
    if any(class_files):
        if top_files:
            raise DataError(f"folder {str(root)!r} mixes images ({top_files[0].name!r}) with "
                            "class sub-folders; keep images only inside the class folders")
        files = [f for group in class_files for f in group]
        labels = [k for k, group in enumerate(class_files) for _ in group]
        return FolderListing(root, tuple(files), tuple(labels), tuple(d.name for d in subdirs))
    if not top_files:
        raise DataError(f"folder {str(root)!r} holds no images "
                        f"({', '.join(s[1:].upper() for s in IMAGE_SUFFIXES)}), neither at the "
                        "top nor in class sub-folders")
    return FolderListing(root, tuple(top_files), None, ())


def _existing_folder(folder: str | Path) -> Path:
    path = Path(folder)
    if not path.exists():
        raise DataError(f"dataset {str(folder)!r} is neither a built-in dataset ('digits') nor "
                        "an existing folder; give 'digits' or a folder of images")
    if not path.is_dir():
        raise DataError(f"dataset {str(folder)!r} is a file, not a folder; give a folder of "
                        "images (class sub-folders or flat) or 'digits'")
    return path


def _split_root(root: Path, split: str) -> Path:
    """``DIR/train`` or ``DIR/val`` when DIR holds only split folders; else DIR itself."""
    if split == "all":
        return root
    names = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if not names or not names <= _SPLIT_NAMES:
        return root
    for candidate in _SPLIT_FOLDERS.get(split, (split,)):
        if candidate in names:
            return root / candidate
    raise DataError(f"folder {str(root)!r} has split sub-folders {sorted(names)} but none for "
                    f"split {split!r}; add {root / _SPLIT_FOLDERS.get(split, (split,))[0]}")


def probe_readable(listing: FolderListing) -> None:
    """Fail early when no file of the folder even opens as an image (headers only)."""
    for path in listing.files:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018  (reading the header is the check)
            return
        except DECODE_ERRORS:
            continue
    raise DataError(f"folder {str(listing.root)!r}: none of its {len(listing.files)} image "
                    "files can be read (all corrupt or not images); check the files")


def decode(path: Path) -> Image.Image:
    """Fully decode one file (truncated data fails here, not later)."""
    with Image.open(path) as image:
        image.load()  # pixel data stays usable after the file is closed
        return image
