"""A user's image folders, torchvision's ``ImageFolder`` layout::

    DIR/train/<class>/*.jpg      DIR/<class>/*.jpg
    DIR/val/<class>/*.jpg        (class folders alone: split here, 80/20, stratified, seeded)

Classes are the class folders' names, indexed in sorted order; a class folder's images may
lie in subfolders of it. Files are images by their extension, in any case (``EXTENSIONS``);
hidden files and folders (a name starting with ``.``) and other files are ignored, and so is
any folder beside ``train/`` and ``val/`` (a ``test/`` folder is never read). Every image is
decoded with Pillow in whatever mode it comes and converted to the network's channels (``L``
or ``RGB``; 16-bit grey scaled to 8 bits, alpha dropped, CMYK and palettes converted as Pillow
converts them), then resized to the network's input with Pillow's bilinear filter. A file
that cannot be decoded is an error naming it, never skipped. numpy and Pillow only.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shrinkc.compiler.errors import ShrinkError

from .npz import size_text

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                        ".ppm", ".pgm"})
SPLITS = ("train", "val")
SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})  # 0..65535, scaled to 0..255
MAX_DECODE_BYTES = 512 << 20  # decoding one image: Pillow's image and its conversions


@dataclass(frozen=True)
class Tree:
    """An image folder as found: the classes (sorted), and each split's files (paths
    relative to the root, posix) with their class indices: ``files['train']`` and
    ``files['val']``, or ``files['all']`` for class folders alone."""

    root: Path
    classes: list[str]
    files: dict[str, list[tuple[str, int]]]

    @property
    def count(self) -> int:
        return sum(len(f) for f in self.files.values())


def _visible(entries: Iterator[os.DirEntry]) -> list[os.DirEntry]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _images(folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursively, hidden ones left out, symlinked
    folders followed once), sorted."""
    out = []
    seen: set[tuple[int, int]] = set()
    for here, dirs, names in os.walk(folder, followlinks=True):
        try:
            st = os.stat(here)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree: walked already
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS:
                out.append(Path(here) / name)
    return out


def _class_folders(split_root: Path) -> list[str]:
    try:
        with os.scandir(split_root) as it:
            return [e.name for e in _visible(it) if e.is_dir()]
    except OSError as e:
        raise ShrinkError(f"cannot read {split_root.as_posix()}: {e.strerror}") from None


def _split_files(root: Path, split_root: Path, classes: list[str]) -> list[tuple[str, int]]:
    """Every class's images under ``split_root``, as (path relative to ``root``, index)."""
    out = []
    for index, name in enumerate(classes):
        found = _images(split_root / name)
        if not found:
            raise ShrinkError(f"{(split_root / name).as_posix()}: an empty class folder (no "
                              "image files)", None,
                              f"put images in it ({', '.join(sorted(EXTENSIONS))}), or "
                              "remove the folder")
        out.extend((p.relative_to(root).as_posix(), index) for p in found)
    return out


def scan(root: Path) -> Tree:
    """The classes and image files of an image folder, checked: no classes, an empty class
    folder, or a class of train/ missing from val/ (or the other way) are errors naming the
    folder."""
    shown = root.as_posix()
    have = {s: (root / s).is_dir() for s in SPLITS}
    if any(have.values()):
        if not all(have.values()):
            there, missing = ("train", "val") if have["train"] else ("val", "train")
            raise ShrinkError(f"{shown}: has {there}/ but no {missing}/", None,
                              f"put {missing}/<class>/ folders beside {there}/, or put the "
                              "class folders directly in the folder (then it is split 80/20)")
        by_split = {s: _class_folders(root / s) for s in SPLITS}
        for s in SPLITS:
            if not by_split[s]:
                raise ShrinkError(f"{(root / s).as_posix()}: no class folders", None,
                                  f"{s}/ holds one folder of images per class")
        for s, other in (("train", "val"), ("val", "train")):
            extra = [c for c in by_split[s] if c not in by_split[other]]
            if extra:
                raise ShrinkError(f"{(root / s / extra[0]).as_posix()}: class '{extra[0]}' is "
                                  f"in {s}/ but not in {other}/", None,
                                  f"every class needs images in both train/ and val/ (add "
                                  f"{other}/{extra[0]}/, or remove it from {s}/)")
        classes = by_split["train"]
        files = {s: _split_files(root, root / s, classes) for s in SPLITS}
    else:
        classes = _class_folders(root)
        if not classes:
            raise ShrinkError(f"{shown}: no class folders", None,
                              "an image folder holds train/<class>/ and val/<class>/ folders, "
                              "or one folder of images per class")
        files = {"all": _split_files(root, root, classes)}
    return Tree(root, classes, files)


def content_sha256(root: Path, relpaths: list[str]) -> str:
    """The sha256 of an image folder's contents: every image file's path and bytes."""
    h = hashlib.sha256(b"shrinkc image folder\n")
    for rel in sorted(relpaths):
        f = hashlib.sha256()
        try:
            with open(root / rel, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023
                    f.update(chunk)
        except OSError as e:
            raise ShrinkError(f"cannot read {(root / rel).as_posix()}: {e.strerror}") from None
        h.update(f"{rel}\0{f.hexdigest()}\n".encode())
    return h.hexdigest()


def pillow():
    """Pillow's Image module, or an error saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise ShrinkError("reading image files needs Pillow", None,
                          "pip install 'shrinkc[search]' (or pip install pillow)") from None
    return Image


def convert(im, channels: int, size: tuple[int, int]) -> np.ndarray:
    """A Pillow image as the network takes it: ``L`` (1 channel) or ``RGB`` (3), 16-bit
    grey scaled to 8 bits, resized bilinearly to ``size`` (H, W); H x W x C uint8."""
    Image = pillow()
    if im.mode in SIXTEEN_BIT:  # (v + 128) // 257, clipped to 0..255, in one int64 copy
        wide = np.asarray(im).astype(np.int64)
        wide += 128
        wide //= 257
        np.clip(wide, 0, 255, out=wide)
        im = Image.fromarray(wide.astype(np.uint8), "L")
        del wide
    with warnings.catch_warnings():  # e.g. a palette image's transparency, which is dropped
        warnings.simplefilter("ignore")
        im = im.convert("L" if channels == 1 else "RGB")
    h, w = size
    if im.size != (w, h):
        im = im.resize((w, h), Image.Resampling.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def decode_bytes(mode: str, size: tuple[int, int], channels: int) -> int:
    """The most memory ``convert`` takes for an image of ``mode`` and ``size`` (W, H) at
    once, its data included: Pillow keeps 1 byte a pixel for 1, L and P, 2 for 16-bit grey
    and 4 for the rest; converting copies it to L (1) or RGB (4), and 16-bit grey passes
    through numpy (the array, an int64 copy, 8-bit grey) first."""
    pixels = size[0] * size[1]
    held = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    target = 1 if channels == 1 else 4
    if mode in SIXTEEN_BIT:
        return pixels * (2 * held + 8 + 2 + target)
    return pixels * (held + target)


def decode(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One image file, decoded and converted (``convert``); an error naming it when Pillow
    cannot decode it, or when decoding it would take more than ``MAX_DECODE_BYTES`` (its
    header says its size: checked before its pixels are read)."""
    Image = pillow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                need = decode_bytes(im.mode, im.size, channels)
                if need > MAX_DECODE_BYTES:
                    w, h = im.size
                    raise ShrinkError(
                        f"{path.as_posix()}: an image of {w:,}x{h:,} pixels (mode "
                        f"{im.mode}) would take {size_text(need)} to decode, more "
                        f"than the {size_text(MAX_DECODE_BYTES)} allowed for one image", None,
                        f"make it smaller first (the network takes {size[0]}x{size[1]}); "
                        "every image file is read, none is skipped")
                im.load()
                return convert(im, channels, size)
    except ShrinkError:
        raise
    except Exception as e:  # Pillow's decoders raise many kinds (OSError, SyntaxError, ...)
        raise ShrinkError(f"{path.as_posix()}: cannot decode this image: "
                          f"{e or type(e).__name__}", None,
                          "replace or remove the file (every image file is read; none is "
                          "skipped)") from None


def decode_all(paths: list[Path], channels: int, size: tuple[int, int],
               show: bool = True) -> np.ndarray:
    """Every file of ``paths``, decoded, as N x H x W x C uint8; a progress bar on a
    terminal."""
    out = np.empty((len(paths), *size, channels), dtype=np.uint8)
    for i, path in progress(paths, show, "decoding images"):
        out[i] = decode(path, channels, size)
    return out


def progress(items: list, show: bool, what: str) -> Iterator[tuple[int, object]]:
    """``enumerate(items)``, with a rich progress bar on stderr when it is a terminal."""
    if not (show and sys.stderr.isatty() and len(items) > 1):
        yield from enumerate(items)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=len(items))
        for i, item in enumerate(items):
            yield i, item
            bar.advance(task)

