"""The shipped-model registry (``models/registry.json``), read without importing torch.

``registry.json`` holds ``{"default": NAME, "models": {NAME: {"file", "sha256",
"family", "description", "params", "size_bytes", "training", "metrics"}},
"fusions": {NAME: {"weight", "confidence_scale"}}}``; a fusion is offered as
``NAME+modelfree``.
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


def _data() -> dict:
    p = package_dir() / "registry.json"
    return json.loads(p.read_text()) if p.exists() else {"default": FALLBACK_DEFAULT, "models": {}}


def registry() -> dict:
    """Shipped models: name -> entry."""
    return _data()["models"]


def default_model() -> str:
    """The estimator ``avsync detect`` uses when ``--model`` is not given."""
    return _data().get("default", FALLBACK_DEFAULT)


def fusions() -> dict:
    """Shipped fusions: learned model name -> {"weight", "confidence_scale"} (see ``sync.fusion``)."""
    return _data().get("fusions", {})
