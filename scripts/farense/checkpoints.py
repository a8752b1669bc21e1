"""Training checkpoints, results/checkpoints/<adapter>/: `last`, the newest, and `previous`, the
one before it. Each is a folder: the adapters, the optimizer state, the best adapter as of then
(best.safetensors) and the run's counters (state.json).

Writing: the new checkpoint is written whole to `last.tmp`; then the old `previous` is removed,
`last` becomes `previous` and `last.tmp` becomes `last`. A kill at any moment leaves at least one
whole checkpoint (between the two renames: `previous` alone).

Resuming: a checkpoint is read whole before anything of it is loaded: its counters, and every
safetensors file's header and sizes (farense.artifact_checks) with each tensor's name and shape
against the model's adapters and the optimizer's state. A damaged one (a truncated file, a
garbled header, state.json cut short) is set aside, renamed `last.damaged` (`.damaged-2`, ...)
for whoever wants to look at it, never deleted, and the one before is tried the same way; with
none left, training starts from scratch. The log says which. A checkpoint made with other
settings or data is not damaged: it is passed over, and left where it is.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from .artifact_checks import check_safetensors, read_json
from .diskspace import writing
from .errors import PipelineError

log = logging.getLogger(__name__)

LAST, PREVIOUS = "last", "previous"
FILES = ("adapters.safetensors", "optimizer.safetensors", "best.safetensors", "state.json")


@dataclass
class Resumed:
    """What resume found: the counters to go on from (None: from scratch), the folder they came
    from, and the damaged checkpoints set aside on the way."""

    counters: dict | None = None
    source: Path | None = None
    set_aside: list[str] = field(default_factory=list)


def save(checkpoint_dir: Path, model, optimizer, counters: dict) -> None:
    """Adapters, optimizer state, the best adapter so far (checkpoint_dir/best.safetensors) and
    `counters` (state.json) as the new `last`; the old `last` becomes `previous`."""
    last, previous = checkpoint_dir / LAST, checkpoint_dir / PREVIOUS
    tmp = last.with_name(LAST + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with writing(last):  # a full disk: one line naming the checkpoint, and the one before kept
            tmp.mkdir(parents=True)
            mx.save_safetensors(str(tmp / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
            mx.save_safetensors(str(tmp / "optimizer.safetensors"), dict(tree_flatten(optimizer.state)))
            shutil.copyfile(checkpoint_dir / "best.safetensors", tmp / "best.safetensors")
            (tmp / "state.json").write_text(json.dumps(counters, indent=1), encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if last.exists():
        shutil.rmtree(previous, ignore_errors=True)
        last.rename(previous)
    tmp.rename(last)


class Damaged(Exception):
    """A checkpoint that cannot be resumed from; the message says which file and why."""


def _tensors(path: Path, expected: dict) -> dict:
    """The tensors of a checkpoint file, when their names and shapes are the expected ones."""
    try:
        header = check_safetensors(path)
    except PipelineError as err:
        raise Damaged(str(err)) from None
    shapes = {name: tuple(value.shape) for name, value in expected.items()}
    if {name: shape for name, (_, shape) in header.items()} != shapes:
        missing = sorted(set(shapes) - set(header)) or sorted(n for n in header if header[n][1] != shapes.get(n))
        raise Damaged(
            f"{path}: its tensors are not this model's adapters or optimizer state (first difference: {missing[:1]})"
        )
    try:
        tensors = mx.load(str(path))
        mx.eval(tensors)
    except (RuntimeError, ValueError) as err:
        raise Damaged(f"{path}: {' '.join(str(err).split())}") from None
    return tensors


def _read(directory: Path, model, optimizer, run_id: str, make_state):
    """(counters, adapters, optimizer state, best adapters) of a checkpoint of this run, None for
    one of another run; Damaged when any part is missing or broken."""
    try:
        saved = read_json(directory / "state.json", "checkpoint counters")
    except PipelineError as err:
        raise Damaged(str(err)) from None
    if not isinstance(saved, dict) or not isinstance(saved.get("run"), str):
        raise Damaged(f"{directory / 'state.json'}: not a checkpoint's counters")
    if saved["run"] != run_id:
        return None
    counters = {k: v for k, v in saved.items() if k != "run"}
    try:
        make_state(counters)
    except (TypeError, ValueError) as err:
        raise Damaged(f"{directory / 'state.json'}: {err}") from None
    adapters_expected = dict(tree_flatten(model.trainable_parameters()))
    adapters = _tensors(directory / "adapters.safetensors", adapters_expected)
    optimizer_state = _tensors(directory / "optimizer.safetensors", dict(tree_flatten(optimizer.state)))
    _tensors(directory / "best.safetensors", adapters_expected)
    return counters, adapters, optimizer_state


def set_aside(directory: Path) -> Path:
    """Rename a damaged checkpoint out of the way (`<name>.damaged`, then `-2`, `-3`...)."""
    target, n = directory.with_name(directory.name + ".damaged"), 1
    while target.exists():
        n += 1
        target = directory.with_name(f"{directory.name}.damaged-{n}")
    directory.rename(target)
    return target


def resume(checkpoint_dir: Path, model, optimizer, run_id: str, make_state, main_rank: bool = True) -> Resumed:
    """Load the newest whole checkpoint of this run into `model` and `optimizer` (and, on the main
    rank, its best adapter into checkpoint_dir/best.safetensors). Damaged ones are set aside by
    the main rank (data-parallel ranks share the folder; each decides alike, reading the same
    files), checkpoints of other runs passed over."""
    found = Resumed()
    for name in (LAST, PREVIOUS):
        directory = checkpoint_dir / name
        if not directory.exists():
            continue
        try:
            read = _read(directory, model, optimizer, run_id, make_state)
        except Damaged as err:
            aside = set_aside(directory) if main_rank else directory.with_name(directory.name + ".damaged")
            found.set_aside.append(str(aside))
            log.warning("checkpoint %s is damaged (%s): set aside as %s", directory, err, aside.name)
            continue
        if read is None:
            log.info("checkpoint in %s belongs to another configuration or data: not resumed", directory)
            continue
        counters, adapters, optimizer_state = read
        model.load_weights(list(adapters.items()), strict=False)
        optimizer.state = tree_unflatten(list(optimizer_state.items()))
        if main_rank:  # the best as of then
            shutil.copyfile(directory / "best.safetensors", checkpoint_dir / "best.safetensors")
        found.counters, found.source = counters, directory
        if found.set_aside:
            log.warning("resuming from the checkpoint before it, %s (iteration %d)", directory, counters["iteration"])
        return found
    if found.set_aside:
        log.warning("no earlier checkpoint of this run in %s: training starts from scratch", checkpoint_dir)
    return found
