"""Which files under raw_dir belong to the corpus, and which are skipped, with the reason.

A raw folder may be shared or downloaded, so what is read is decided before anything is
opened:
- a regular file is read;
- a symbolic link whose target lies outside raw_dir is skipped (a link to /etc/passwd would
  otherwise put that file into the training data), unless `cleaning.allow_outside_links`;
- a link to a file inside raw_dir is skipped: the file is read once, under its own name;
- a link to a folder is not followed (inside: its files are read under their own names);
- a FIFO, socket or device is skipped without being opened (a reader that opens a FIFO waits
  for a writer forever); so is a broken link.
The same scan serves Snakemake (rules/common.smk: the rule's inputs) and the clean_text stage.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

SPECIAL = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _special(mode: int) -> str | None:
    for test, name in SPECIAL:
        if test(mode):
            return name
    return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def scan(raw_dir: str | os.PathLike, allow_outside_links: bool = False) -> tuple[list[Path], list[dict]]:
    """(files to read, sorted; skipped entries as {"path", "reason"}, paths relative to raw_dir)."""
    raw = Path(raw_dir)
    root = os.path.realpath(raw)
    files, skipped = [], []
    for folder, dirs, names in os.walk(raw, followlinks=False):
        for name in sorted(dirs):
            path = Path(folder) / name
            if path.is_symlink():  # os.walk lists a link to a folder among the folders and does not enter it
                target = os.path.realpath(path)
                where = (
                    "inside raw_dir, read under their own names"
                    if _inside(target, root)
                    else f"outside raw_dir ({target})"
                )
                skipped.append(
                    {
                        "path": path.relative_to(raw).as_posix(),
                        "reason": f"link to a folder, not followed: its files are {where}",
                    }
                )
        for name in names:
            path = Path(folder) / name
            relative = path.relative_to(raw).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                target = os.path.realpath(path)
                try:
                    target_mode = os.stat(target).st_mode
                except OSError:
                    skipped.append({"path": relative, "reason": f"broken link (to {os.readlink(path)})"})
                    continue
                if _special(target_mode):
                    skipped.append({"path": relative, "reason": f"link to {_special(target_mode)}, not opened"})
                elif not stat.S_ISREG(target_mode):
                    skipped.append({"path": relative, "reason": "link to a folder, not followed"})
                elif _inside(target, root):
                    skipped.append(
                        {
                            "path": relative,
                            "reason": f"link to {Path(target).relative_to(root).as_posix()}, read once under its own name",
                        }
                    )
                elif allow_outside_links:
                    files.append(path)
                else:
                    skipped.append(
                        {
                            "path": relative,
                            "reason": f"link to {target}, outside raw_dir (cleaning.allow_outside_links is off)",
                        }
                    )
            elif _special(mode):
                skipped.append({"path": relative, "reason": f"{_special(mode)}, not opened"})
            elif stat.S_ISREG(mode):
                files.append(path)
    return sorted(files), sorted(skipped, key=lambda s: s["path"])
