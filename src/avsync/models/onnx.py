"""Two-stream models through onnxruntime: detection without torch.

At ship time (``python -m avsync.train.ship``, or ``python -m avsync.models.onnx
NAME...`` for models already shipped) each two-stream checkpoint's two encoders
are exported from the shipped ``.pt`` to ``weights/NAME.visual.onnx`` and
``weights/NAME.audio.onnx``, with the checkpoint's metadata (everything but
the weights) inside the visual file. ``registry.json`` records their sha256
and the largest difference from torch's embeddings measured at export.
``load_model`` then runs such a model with onnxruntime when it is installed
(``AVSYNC_RUNTIME=torch`` forces torch); torch stays the runtime of training
and of the other families. Export needs torch and the ``onnx`` package; running
needs only ``onnxruntime``.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from avsync.errors import ModelError
from avsync.models.registry import package_dir, registry, registry_data, write_registry
from avsync.models.scoring import EstimatorBase
from avsync.util import sha256_file

#: Families exported to ONNX (their score needs only the two encoders).
ONNX_FAMILIES = ("twostream",)
#: Largest allowed difference between torch's and onnxruntime's unit embeddings (checked at export and in tests).
TOLERANCE = 1e-4
#: ONNX opset of the exports.
OPSET = 17
PARTS = ("visual", "audio")


def runtime_for(name: str) -> str:
    """``onnx`` where a shipped model has an ONNX export and onnxruntime is installed, else ``torch``."""
    choice = os.environ.get("AVSYNC_RUNTIME", "").strip().lower()
    entry = registry().get(name, {})
    if choice == "torch" or not entry.get("onnx"):
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx"


def _threads() -> int:
    """Threads per onnxruntime session: the machine's cores, at most 2 (the encoders are small)."""
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _verified(name: str, part: str) -> Path:
    info = registry()[name]["onnx"][part]
    path = package_dir() / "weights" / info["file"]
    if not path.exists():
        raise ModelError(f"model {name!r}: {path.name} is missing from the installation")
    digest = sha256_file(path)
    if digest != info["sha256"]:
        raise ModelError(f"model {name!r}: {path.name} has sha256 {digest[:12]}…, "
                         f"registry says {info['sha256'][:12]}… (corrupt or replaced)")
    return path


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or _threads()
    so.inter_op_num_threads = 1
    # no busy-waiting threads between the many short calls: the cores are shared with decoding and the face mesh
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


class OnnxEstimator(EstimatorBase):
    """A shipped two-stream model run by onnxruntime (same scores as ``LearnedEstimator`` within ``TOLERANCE``)."""

    def __init__(self, name: str):
        entry = registry()[name]
        visual, audio = _session(_verified(name, "visual")), _session(_verified(name, "audio"))
        meta = json.loads(visual.get_modelmeta().custom_metadata_map["avsync_meta"])
        super().__init__(meta, meta["model"]["family"], meta["model"].get("visual", "conv3d"))
        # "visual-stream": the same encoder on one thread, for ``CropEmbedder``, which runs it beside decoding
        # and the face mesh: the cores are busy, and a second intra-op thread only costs CPU (measured,
        # interleaved: 1.01 against 1.18 ms of CPU a frame on 68-frame chunks). Same embeddings.
        self._sessions = {"visual": visual, "audio": audio,
                          "visual-stream": _session(_verified(name, "visual"), threads=1)}
        self.sha256 = entry["sha256"]  # the .pt the export came from
        self.runtime = "onnx"

    def _run(self, part: str, x: np.ndarray) -> np.ndarray:
        s = self._sessions[part]
        return s.run(None, {s.get_inputs()[0].name: x})[0]

    def _embed_visual(self, x: np.ndarray, part: str = "visual") -> np.ndarray:
        return self._run(part, x if x.dtype == np.uint8 else x.astype(np.float32))

    def _embed_visual_stream(self, x: np.ndarray) -> np.ndarray:
        return self._embed_visual(x, "visual-stream")

    def _embed_audio(self, mel: np.ndarray) -> np.ndarray:
        return self._run("audio", mel.astype(np.float32, copy=False))


# --------------------------------------------------------------------------- export (ship time: torch + onnx)


def example_inputs(visual_kind: str, frames: int = 37, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for exporting and checking an export: random crops or lip points (some frames lost), and a mel grid."""
    from avsync.constants import MOUTH_CROP_HW
    from avsync.models.inputs import AUDIO_STEPS

    rng = np.random.default_rng(seed)
    if visual_kind == "landmark":
        vis = (rng.normal(0.0, 0.3, (1, frames, 40, 2))).astype(np.float32)
        vis[0, [3, 4, frames - 2]] = np.nan
    else:
        vis = rng.integers(0, 256, (1, frames) + MOUTH_CROP_HW, dtype=np.uint8)
    mel = rng.normal(0.0, 1.0, (1, AUDIO_STEPS * frames + 32, 40)).astype(np.float32)
    return {"visual": vis, "audio": mel}


def export_model(pt_path: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Export a two-stream checkpoint's encoders to ``out_dir/NAME.{visual,audio}.onnx``.

    Returns ``{"visual": path, "audio": path, "max_abs_diff": d}``, ``d`` measured
    against torch on ``example_inputs`` at two lengths; raises if over ``TOLERANCE``.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from avsync.models.checkpoint import model_from_checkpoint, read_checkpoint

    obj = read_checkpoint(pt_path)
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    model = model_from_checkpoint(obj)
    if model.family not in ONNX_FAMILIES:
        raise ModelError(f"{obj['name']}: family {model.family} is not exported to ONNX (torch runs it)")

    class Part(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.model, self.fn = model, fn

        def forward(self, x):
            return getattr(self.model, self.fn)(x)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ex = example_inputs(model.visual_kind)
    paths, worst = {}, 0.0
    for part in PARTS:
        path = out_dir / f"{obj['name']}.{part}.onnx"
        tmp = path.with_suffix(".tmp")
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter: the torch.export one needs onnxscript and gains nothing for these convnets
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks inside attention, constant here
            fast = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)  # VTP's transformer: plain ops, not the fused kernel
            try:
                torch.onnx.export(Part(f"embed_{part}").eval(), (torch.from_numpy(ex[part]),), str(tmp),
                                  input_names=["x"], output_names=["emb"],
                                  dynamic_axes={"x": {1: "t"}, "emb": {1: "t"}},
                                  opset_version=OPSET, dynamo=False, do_constant_folding=True)
            finally:
                torch.backends.mha.set_fastpath_enabled(fast)
        proto = onnx.load(str(tmp))
        entries = {"avsync_part": part, "avsync_source_sha256": sha256_file(pt_path)}
        if part == "visual":
            entries["avsync_meta"] = json.dumps(meta, sort_keys=True, default=float)
        for k, v in entries.items():
            proto.metadata_props.add(key=k, value=v)
        proto.doc_string = f"avsync {obj['name']} {part} encoder, exported from its .pt (models/onnx.py)"
        onnx.save(proto, str(tmp))
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        for frames in (37, 300):  # another length than the traced one: the time axis is dynamic
            x = example_inputs(model.visual_kind, frames=frames, seed=frames)[part]
            with torch.no_grad():
                ref = getattr(model, f"embed_{part}")(torch.from_numpy(x)).numpy()
            got = sess.run(None, {"x": x})[0]
            worst = max(worst, float(np.nanmax(np.abs(got - ref))))
        os.replace(tmp, path)
        paths[part] = path
    if worst > TOLERANCE:
        raise ModelError(f"{obj['name']}: ONNX export differs from torch by {worst:.2e} > {TOLERANCE:g}")
    return {**paths, "max_abs_diff": worst}


def register_export(name: str, exported: dict) -> dict:
    """Record an export's files (sha256, size) and its measured difference in ``registry.json``."""
    data = registry_data()
    entry = {part: {"file": Path(exported[part]).name, "sha256": sha256_file(exported[part]),
                    "size_bytes": Path(exported[part]).stat().st_size} for part in PARTS}
    entry.update(max_abs_diff=float(f"{exported['max_abs_diff']:.3g}"), tolerance=TOLERANCE, opset=OPSET)
    data["models"][name]["onnx"] = entry
    write_registry(data)
    return entry


def export_shipped(names: list[str] | None = None) -> dict:
    """Export (again) the shipped two-stream models, or ``names``; returns name -> registry entry."""
    from avsync.models.checkpoint import registered_path

    done = {}
    for name, entry in sorted(registry().items()):
        if (names and name not in names) or entry["family"] not in ONNX_FAMILIES:
            continue
        done[name] = register_export(name, export_model(registered_path(name), package_dir() / "weights"))
    return done


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    for name, e in export_shipped(names or None).items():
        print(f"{name}: {e['visual']['file']} {e['visual']['size_bytes'] / 1e6:.2f} MB, "
              f"{e['audio']['file']} {e['audio']['size_bytes'] / 1e6:.2f} MB, max |ONNX - torch| {e['max_abs_diff']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
