"""Training checkpoints and trained-model files on local disk, without pickle.

A checkpoint is a directory ``step_0000123/``:
    model.safetensors      the model's state dict
    optimizer.safetensors  the optimiser's tensor state, keys "<param id>.<name>"
    rng.safetensors        torch's CPU (and CUDA) generator states
    state.json             step, epoch, batch within the epoch, scheduler state, the optimiser's
                           param groups and scalar state, the config, and anything extra
It is written under a temporary name and renamed when complete, so a crash mid-write never
leaves a directory that :func:`latest_checkpoint` would pick.

A trained model for later use is ``model.safetensors`` + ``config.json`` (:func:`export_model`).
"""

from __future__ import annotations

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
    "load_checkpoint",
    "latest_checkpoint",
    "prune_checkpoints",
    "export_model",
    "MODEL_FILE",
    "CONFIG_FILE",
]

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_PREFIX = "step_"


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies: safetensors refuses shared or strided storage."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


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
) -> Path:
    """Write a checkpoint of the current training state into ``directory``; returns its path."""
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
    if torch.cuda.is_available():
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
    if final.exists():  # the same step saved again (a resumed run): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in ``directory``, or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    done = [p for p in directory.glob(f"{_PREFIX}*") if (p / "state.json").is_file()]
    return max(done, key=lambda p: int(p.name[len(_PREFIX) :]), default=None)


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints, and abandoned temporary ones."""
    directory = Path(directory)
    done = sorted(
        (p for p in directory.glob(f"{_PREFIX}*") if (p / "state.json").is_file()), key=lambda p: int(p.name[len(_PREFIX) :])
    )
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in directory.glob(".tmp-*"):
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
        tensors = load_file(path / "optimizer.safetensors", device=str(device))
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


def export_model(directory: str | Path, model: torch.nn.Module, config: dict) -> Path:
    """Write ``model.safetensors`` and ``config.json`` for later loading; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(model.state_dict()), directory / MODEL_FILE)
    _write_json(directory / CONFIG_FILE, config)
    return directory
