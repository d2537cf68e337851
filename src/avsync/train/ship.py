"""Ship trained checkpoints in the package: copy into ``models/weights`` and record them in the registry.

    python -m avsync.train.ship runs/*/*.pt [--default NAME] [--fuse A+B [--weights WA WB]]

Each checkpoint must be an avsync checkpoint of at most 20 MB; its sha256 goes
into ``models/registry.json``, which ``avsync models`` lists and ``load_model``
verifies. A two-stream model's encoders are also exported beside it to ONNX
(``models.onnx``: what ``avsync detect`` runs, without torch), their sha256
recorded in the registry too. ``--default`` names the model ``avsync detect`` uses without
``--model`` (``modelfree`` keeps the model-free method).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from avsync.models.checkpoint import WEIGHTS_DIR, read_checkpoint, register
from avsync.models.onnx import ONNX_FAMILIES, export_model, register_export
from avsync.models.registry import package_dir, registry_data, write_registry

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
        entry = register(dst)
        if entry["family"] in ONNX_FAMILIES:  # detection runs these on onnxruntime, without torch
            register_export(name, export_model(dst, dst_dir))
        names.append(name)
    return names


def set_default(name: str) -> None:
    """Make ``name`` (a shipped model, a shipped fusion, or ``modelfree``) the default of ``avsync detect``."""
    from avsync.api import available_models

    if name not in available_models():
        raise SystemExit(f"--default {name}: not one of {', '.join(available_models())}")
    data = registry_data()
    data["default"] = name
    write_registry(data)


def add_fusion(name: str, weights: list[float] | None, data_dir: Path) -> dict:
    """Offer the fusion ``A+B[+...]`` of shipped models (or ``modelfree``), its confidence calibrated on the
    speakers every learned member held out."""
    from avsync.api import available_models, load_model
    from avsync.models.registry import fusions, set_calibration
    from avsync.sync.fusion import JOIN
    from avsync.train.calibrate import calibrate, calibration_bank, consensus_offsets, read_bank

    members = name.split(JOIN)
    weights = weights or [1.0 / len(members)] * len(members)
    known = set(available_models()) - set(fusions())
    if len(members) < 2 or any(m not in known for m in members) or len(weights) != len(members):
        raise SystemExit(f"--fuse {name}: two or more of {', '.join(sorted(known))}, joined by '{JOIN}', one weight each")
    data = registry_data()
    data.setdefault("fusions", {})[name] = {"members": members, "weights": [float(w) for w in weights]}
    write_registry(data)
    fused = load_model(name)
    bank = calibration_bank(fused, data_dir)
    readings = read_bank(fused, bank)
    cal = calibrate(readings, own=consensus_offsets(readings, bank, name=name))
    set_calibration(name, cal.to_dict())
    return cal.to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--default", default=None)
    ap.add_argument("--fuse", default=None, help="also offer the fusion A+B of shipped models (or modelfree)")
    ap.add_argument("--weights", type=float, nargs="*", default=None, help="the members' weights (default: equal)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    a = ap.parse_args()
    for n in ship(a.checkpoints):
        print(f"shipped {n}")
    if a.fuse:
        print(f"fusion {a.fuse}: {add_fusion(a.fuse, a.weights, a.data)}")
    if a.default:
        set_default(a.default)
        print(f"default: {a.default}")


if __name__ == "__main__":
    main()
