"""The shipped-model registry (``models/registry.json``), read without importing torch.

``registry.json`` holds ``{"default": NAME, "models": {NAME: {"file", "sha256",
"family", "description", "params", "size_bytes", "training", "metrics"}},
"fusions": {"A+B": {"members": [A, B], "weights": [wa, wb]}}, "calibrations": {NAME: {...}}}``;
a fusion (``sync.fusion``) is offered under its name; ``calibrations`` hold the
fitted confidence (``sync.confidence``) of the model-free method and the
fusions (a learned model's own is inside its checkpoint).
The weights live in ``models/weights/``; ``models.checkpoint`` verifies the
sha256 before loading.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

#: The estimator used when none is named and the registry names no default.
FALLBACK_DEFAULT = "modelfree"


def package_dir() -> Path:
    return Path(str(resources.files("avsync.models")))


def registry_data() -> dict:
    """The whole of ``registry.json`` (an empty registry if there is none)."""
    p = package_dir() / "registry.json"
    return json.loads(p.read_text()) if p.exists() else {"default": FALLBACK_DEFAULT, "models": {}}


def write_registry(data: dict) -> None:
    """Write ``registry.json`` (sorted keys, so diffs stay small)."""
    (package_dir() / "registry.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def registry() -> dict:
    """Shipped models: name -> entry."""
    return registry_data()["models"]


def default_model() -> str:
    """The estimator ``avsync detect`` uses when ``--model`` is not given."""
    return registry_data().get("default", FALLBACK_DEFAULT)


def calibration(name: str) -> dict | None:
    """The confidence calibration of the model-free method or a fusion (``sync.confidence``), if fitted."""
    return registry_data().get("calibrations", {}).get(name)


def set_calibration(name: str, cal: dict) -> None:
    """Record the calibration of the model-free method or a fusion in ``registry.json``."""
    data = registry_data()
    data.setdefault("calibrations", {})[name] = cal
    write_registry(data)


def fusions() -> dict:
    """Shipped fusions: name -> {"members": [...], "weights": [...]} (see ``sync.fusion``)."""
    return registry_data().get("fusions", {})
