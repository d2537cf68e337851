"""Self-describing checkpoints and the model registry.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``weights_only=True`` (no pickled code runs on load)::

    {"format": "avsync-model/1", "name", "description", "model": {family + args},
     "train": {training config}, "code_version", "git_commit", "created",
     "training": {"speakers": [...], "clips_sha256": [...], "clips": n, "seconds": s},
     "metrics": {...}, "calibration": {coef, intercept, features, fitted_on} (``sync.confidence``),
     "n_params", "state_dict": {fp16 tensors}}

(Checkpoints written before calibrations existed carry ``confidence_scale`` instead.)

``models/registry.json`` lists the checkpoints shipped in the package with
their sha256; ``load`` refuses a file whose hash does not match.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from avsync.errors import ModelError
from avsync.util import new_file_mode, sha256_file
from avsync.models.registry import package_dir, registry, registry_data, write_registry

FORMAT = "avsync-model/1"
WEIGHTS_DIR = "weights"


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, meta: dict, half: bool = True) -> str:
    """Write a self-describing checkpoint atomically; returns its sha256."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    return _save({"format": FORMAT, **meta, "state_dict": state}, path)


def _save(obj: dict, path: str | os.PathLike) -> str:
    """torch.save to a temporary file beside ``path``, then rename into place; returns the sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha256_file(path)


def rewrite_meta(src: str | os.PathLike, dst: str | os.PathLike, updates: dict) -> str:
    """Copy a checkpoint with some of its metadata replaced (weights untouched); returns the new sha256."""
    obj = read_checkpoint(src)
    obj.update(updates)
    return _save(obj, dst)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, loaded with ``weights_only=True``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: say so in one line
        raise ModelError(f"cannot read model checkpoint {path}: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ModelError(f"{path} is not an avsync model checkpoint ({FORMAT})")
    return obj


def model_from_checkpoint(obj: dict) -> torch.nn.Module:
    from avsync.models.nets import build_model

    model = build_model(obj["model"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()})
    return model.eval()


def estimator_from_file(path: str | os.PathLike, device=None):
    """A ``LearnedEstimator`` from any checkpoint file (``device``: where a two-stream model's encoders run)."""
    from avsync.models.estimator import LearnedEstimator

    obj = read_checkpoint(path)
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    return LearnedEstimator(model_from_checkpoint(obj), meta, device=device)


# --------------------------------------------------------------------------- registry
def registered_path(name: str) -> Path:
    """The verified weights file of a shipped model."""
    entry = registry()[name]
    path = package_dir() / WEIGHTS_DIR / entry["file"]
    if not path.exists():
        raise ModelError(f"model {name!r}: weights file {path.name} is missing from the installation")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ModelError(f"model {name!r}: weights file {path.name} has sha256 {digest[:12]}…, "
                         f"registry says {entry['sha256'][:12]}… (corrupt or replaced)")
    return path


def register(path: str | os.PathLike) -> dict:
    """Add (or update) a checkpoint already copied into ``models/weights`` to the registry."""
    path = Path(path)
    obj = read_checkpoint(path)
    data = registry_data()
    data["models"][obj["name"]] = {
        "file": path.name,
        "sha256": sha256_file(path),
        "family": obj["model"]["family"],
        "visual": obj["model"].get("visual", "flow"),
        "description": obj.get("description", ""),
        "params": obj.get("n_params"),
        "size_bytes": path.stat().st_size,
        "training": {k: obj["training"][k] for k in ("clips", "seconds", "speakers_count") if k in obj["training"]},
        "steps": obj["training"].get("steps"),
        "train_minutes": round(obj["training"].get("train_seconds", 0) / 60, 1),
        "metrics": obj.get("metrics", {}),
    }
    write_registry(data)
    return data["models"][obj["name"]]
