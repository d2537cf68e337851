"""Ship trained checkpoints in the package: copy into ``models/weights`` and record them in the registry.

    python -m avsync.train.ship runs/*/*.pt [--default NAME] [--fuse NAME --weight W]

Each checkpoint must be an avsync checkpoint of at most 20 MB; its sha256 goes
into ``models/registry.json``, which ``avsync models`` lists and ``load_model``
verifies. ``--default`` names the model ``avsync detect`` uses without
``--model`` (``modelfree`` keeps the model-free method).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from avsync.models.checkpoint import WEIGHTS_DIR, read_checkpoint, register
from avsync.models.registry import package_dir

MAX_BYTES = 20 * 1024 * 1024


def ship(paths: list[Path]) -> list[str]:
    names = []
    dst_dir = package_dir() / WEIGHTS_DIR
    dst_dir.mkdir(parents=True, exist_ok=True)
    for p in paths:
        if p.stat().st_size > MAX_BYTES:
            raise SystemExit(f"{p}: {p.stat().st_size / 1e6:.1f} MB is over the 20 MB limit")
        name = read_checkpoint(p)["name"]
        dst = dst_dir / f"{name}.pt"
        shutil.copyfile(p, dst)
        register(dst)
        names.append(name)
    return names


def set_default(name: str) -> None:
    """Make ``name`` (a shipped model, a shipped fusion, or ``modelfree``) the default of ``avsync detect``."""
    import json

    from avsync.api import available_models

    if name not in available_models():
        raise SystemExit(f"--default {name}: not one of {', '.join(available_models())}")
    reg_path = package_dir() / "registry.json"
    data = json.loads(reg_path.read_text())
    data["default"] = name
    reg_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def add_fusion(name: str, weight: float, data_dir: Path) -> dict:
    """Offer ``NAME+modelfree``: calibrate its confidence on the model's held-out training speakers."""
    import json

    from avsync.api import load_model
    from avsync.models.registry import package_dir as pkg
    from avsync.sync.fusion import FusedEstimator
    from avsync.sync.modelfree import ModelFreeEstimator
    from avsync.train.cache import DEFAULT_CACHE, build_cache, manifest_clips
    from avsync.train.loop import TRAIN_DEFAULTS, load_bank, validate

    est = load_model(name)
    val = set(est.meta["training"]["val_speakers"])
    recs = build_cache([r for r in manifest_clips(data_dir, ("train",)) if r.speaker in val])
    fused = FusedEstimator(est, ModelFreeEstimator(), weight)
    metrics = validate(fused, load_bank(recs, DEFAULT_CACHE), TRAIN_DEFAULTS["val_offsets"])
    reg_path = pkg() / "registry.json"
    data = json.loads(reg_path.read_text())
    data.setdefault("fusions", {})[name] = {"weight": weight, "confidence_scale": metrics["confidence_scale"]}
    data.setdefault("fusion_metrics", {})[name] = metrics
    reg_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--default", default=None)
    ap.add_argument("--fuse", default=None, help="also offer NAME+modelfree")
    ap.add_argument("--weight", type=float, default=0.5, help="weight of the learned curve in the fusion")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    a = ap.parse_args()
    for n in ship(a.checkpoints):
        print(f"shipped {n}")
    if a.fuse:
        print(f"fusion {a.fuse}+modelfree: {add_fusion(a.fuse, a.weight, a.data)}")
    if a.default:
        set_default(a.default)
        print(f"default: {a.default}")


if __name__ == "__main__":
    main()
