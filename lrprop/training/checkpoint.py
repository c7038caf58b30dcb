"""Training checkpoints and trained-model files on local disk, without pickle.

A checkpoint is a directory ``step_0000123/``:
    model.safetensors      the model's state dict
    optimizer.safetensors  the optimiser's tensor state, keys "<param id>.<name>"
    rng.safetensors        torch's CPU (and CUDA) generator states
    state.json             step, epoch, batch within the epoch, scheduler state, the optimiser's
                           param groups and scalar state, the config, and anything extra
    complete.json          written last: every other file's size and sha256
It is written under a temporary name, its files synced to disk, and renamed when complete, so a
crash mid-write never leaves a directory that :func:`latest_checkpoint` would pick. A copy made
elsewhere (Ray's upload of it to the store, which an outage can cut short while Ray still
records the checkpoint as made) is checked against ``complete.json`` by :func:`verify_checkpoint`.

A trained model for later use is ``model.safetensors`` + ``config.json`` (:func:`export_model`),
written the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "save_checkpoint",
    "verify_checkpoint",
    "check_listed",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "export_model",
    "MODEL_FILE",
    "COMPLETE_FILE",
    "CONFIG_FILE",
    "META_FILE",
]

MODEL_FILE = "model.safetensors"
COMPLETE_FILE = "complete.json"
# What a checkpoint needs to resume (one written before complete.json existed has just these).
_REQUIRED = (MODEL_FILE, "optimizer.safetensors", "rng.safetensors", "state.json")
CONFIG_FILE = "config.json"
META_FILE = "meta.json"
_PREFIX = "step_"


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies: safetensors refuses shared or strided storage."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def _fsync_tree(directory: Path) -> None:
    """Flush every file of ``directory`` and the directory itself to disk."""
    for path in directory.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """Rename the complete ``tmp`` directory to ``final``; an existing ``final`` is replaced
    only after the new one is in place, so there is never a moment without either."""
    _fsync_tree(tmp)
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(
    directory: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    epoch: int,
    batch_in_epoch: int,
    config: dict,
    extra: dict | None = None,
    cuda_rng: bool = False,
) -> Path:
    """Write a checkpoint of the current training state into ``directory``; returns its path.

    ``cuda_rng`` also saves the CUDA generators (only for runs on a GPU: asking for them
    otherwise would start a CUDA context on every visible device).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{_PREFIX}{step:08d}"
    tmp = directory / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    save_file(_tensors(model.state_dict()), tmp / MODEL_FILE)

    opt_state = optimizer.state_dict()
    opt_tensors, opt_scalars = {}, {}
    for pid, entries in opt_state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                opt_tensors[f"{pid}.{name}"] = value
            else:
                opt_scalars.setdefault(str(pid), {})[name] = value
    save_file(_tensors(opt_tensors), tmp / "optimizer.safetensors")

    rng = {"cpu": torch.get_rng_state()}
    if cuda_rng and torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{i}"] = s
    save_file(_tensors(rng), tmp / "rng.safetensors")

    _write_json(
        tmp / "state.json",
        {
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "scheduler": scheduler.state_dict(),
            "optimizer": {"param_groups": opt_state["param_groups"], "scalars": opt_scalars},
            "config": config,
            "extra": extra or {},
        },
    )
    _write_json(tmp / COMPLETE_FILE, {"files": {p.name: _fingerprint(p) for p in sorted(tmp.iterdir())}})
    _publish(tmp, final)
    return final


def _fingerprint(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def verify_checkpoint(path: str | Path, name: str | None = None) -> None:
    """Raise a ValueError naming ``name`` (default ``path``) and the file at fault unless the
    checkpoint at ``path`` holds every file its ``complete.json`` lists, each of its size and
    sha256. One without ``complete.json`` (written before it existed, or whose copy stopped
    before it) passes only with every file resuming needs, and is then checked by loading."""
    path = Path(path)
    name = name or str(path)
    try:
        listed = json.loads((path / COMPLETE_FILE).read_text())["files"]
    except FileNotFoundError:
        missing = [f for f in _REQUIRED if not (path / f).is_file()]
        if missing:
            raise ValueError(f"{name}: incomplete checkpoint, no {COMPLETE_FILE} and no {', '.join(missing)}") from None
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{name}: unreadable {COMPLETE_FILE} ({exc})") from exc
    for file in listed:
        if not (path / file).is_file():
            raise ValueError(f"{name}: incomplete checkpoint, {file} is missing")
        check_listed(name, file, _fingerprint(path / file), listed)


def check_listed(name: str, file: str, found: dict, listed: dict) -> None:
    """Raise a ValueError naming checkpoint ``name`` and ``file`` unless ``found`` (its
    ``{"bytes", "sha256"}``) is what the checkpoint's ``complete.json`` (``listed``) says."""
    expected = listed.get(file)
    if expected is None:
        raise ValueError(f"{name}: {COMPLETE_FILE} does not list {file}")
    if found["bytes"] != expected["bytes"]:
        raise ValueError(f"{name}: incomplete checkpoint, {file} has {found['bytes']} of its {expected['bytes']} bytes")
    if found["sha256"] != expected["sha256"]:
        raise ValueError(f"{name}: damaged checkpoint, {file}'s sha256 is not the one {COMPLETE_FILE} lists")


def list_checkpoints(directory: str | Path) -> list[Path]:
    """The complete checkpoints in ``directory``, newest (highest step) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    done = [p for p in directory.glob(f"{_PREFIX}*") if (p / "state.json").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(_PREFIX) :]), reverse=True)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[0] if found else None


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints, and abandoned temporary ones."""
    directory = Path(directory)
    for old in list_checkpoints(directory)[keep:] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    # Only this run's single writer (rank 0) writes here, so leftovers are from a crash.
    for tmp in [*directory.glob(".tmp-*"), *directory.glob(".old-*")]:
        shutil.rmtree(tmp, ignore_errors=True)


def load_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    restore_rng: bool = True,
) -> dict:
    """Restore model (and optimiser, scheduler, RNG) from a checkpoint; returns its state.json."""
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from exc
    device = next(model.parameters()).device
    model.load_state_dict(load_file(path / MODEL_FILE, device=str(device)))
    if optimizer is not None:
        # On the CPU: load_state_dict moves each state to its parameter's device, except Adam's
        # step counters, which must stay on the CPU (on the GPU they would cost a sync a step).
        tensors = load_file(path / "optimizer.safetensors", device="cpu")
        per_param: dict[int, dict] = {}
        for key, value in tensors.items():
            pid, name = key.split(".", 1)
            per_param.setdefault(int(pid), {})[name] = value
        for pid, scalars in state["optimizer"]["scalars"].items():
            per_param.setdefault(int(pid), {}).update(scalars)
        optimizer.load_state_dict({"state": per_param, "param_groups": state["optimizer"]["param_groups"]})
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        rng = load_file(path / "rng.safetensors")
        torch.set_rng_state(rng["cpu"])
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    return state


def export_model(directory: str | Path, model: torch.nn.Module, config: dict, meta: dict | None = None) -> Path:
    """Write ``model.safetensors``, ``config.json`` (the full config) and ``meta.json`` (where the
    model came from: data-set version, run, …) for later loading; returns the directory."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".tmp-{directory.name}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    save_file(_tensors(model.state_dict()), tmp / MODEL_FILE)
    _write_json(tmp / CONFIG_FILE, config)
    _write_json(tmp / META_FILE, meta or {})
    _publish(tmp, directory)
    return directory
