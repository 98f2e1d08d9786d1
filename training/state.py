"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

Layout of a state folder: `tensors-<token>.safetensors` (the model's float32 weights, optimizer
buffers, RNG states) and `state.json` (epoch, history, best score, where a stopped epoch got to,
optimizer hyper-parameters, scheduler and AMP scaler state, and the name of its tensors file). A save
writes a new tensors file, then replaces `state.json` in one rename (`models.atomic.write_text`), then
deletes the older tensors: a run killed at any moment of a save leaves a state.json and the tensors
it names, both of the earlier save or both of the new one. (Before, both files were renamed into
place one after the other, and a kill between the two renames paired new tensors with old progress;
such states, with `tensors.safetensors`, still load.)
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.atomic import write_text

MODEL_PREFIX = "model."


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, values in state["state"].items():
        plain["state"][str(index)] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(index)][key] = value
    return tensors, plain


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": plain["param_groups"]}


def save_train_state(
    folder: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    progress: dict[str, Any],
    model: nn.Module | None = None,
    generator: torch.Generator | None = None,
) -> None:
    """Write everything `load_train_state` needs to continue after `progress["epoch"]` (and, where
    `progress` has a `partial` epoch, from within it): `model`'s weights in float32, whatever dtype
    the run's checkpoints are stored in, and `generator`'s state (a loader's, say)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors, optimizer_plain = _split_optimizer(optimizer.state_dict())
    if model is not None:
        for name, value in model.state_dict().items():
            tensors[MODEL_PREFIX + name] = value.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if generator is not None:
        tensors["rng.generator"] = generator.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    document = {
        "progress": progress,
        "optimizer": optimizer_plain,
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "python_random": _jsonable(random.getstate()),
        "has_model": model is not None,
    }
    document["tensors_file"] = f"tensors-{uuid.uuid4().hex[:12]}.safetensors"
    save_file(tensors, str(folder / document["tensors_file"]))  # a new name: nothing reads it yet
    write_text(folder / "state.json", json.dumps(document) + "\n")  # the commit point
    for older in [*folder.glob("tensors*.safetensors"), *folder.glob(".*.partial-*")]:
        if older.name != document["tensors_file"]:  # and what a killed save left half-written
            older.unlink()


def saved_progress(folder: Path) -> dict[str, Any]:
    """The progress a state folder holds, and `has_model`: whether it holds the model's weights (older
    runs' states do not: their weights are in `last/`)."""
    document = json.loads((folder / "state.json").read_text())
    return {**document["progress"], "has_model": bool(document.get("has_model", False))}


def load_train_state(
    folder: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    model: nn.Module | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Restore optimizer, scheduler, scaler and RNG states in place, and `model`'s weights and
    `generator`'s state where the folder holds them; returns the saved progress."""
    document = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / document.get("tensors_file", "tensors.safetensors")))
    if model is not None and document.get("has_model", False):
        weights = {k[len(MODEL_PREFIX) :]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
        model.load_state_dict(weights)
    optimizer.load_state_dict(_join_optimizer(tensors, document["optimizer"]))
    scheduler.load_state_dict(document["scheduler"])
    if scaler is not None and document["scaler"]:
        scaler.load_state_dict(document["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    if generator is not None and "rng.generator" in tensors:
        generator.set_state(tensors["rng.generator"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    version, internal, gauss = document["python_random"]
    random.setstate((version, tuple(internal), gauss))
    progress: dict[str, Any] = document["progress"]
    return progress


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple | list) else value
