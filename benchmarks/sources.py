"""Source groups of the data clips, shared by sections 1 and 6 of docs/BENCHMARKS.md.

A ``dev`` clip's group comes from its path and its ``manifest.tsv`` row, first
rule that matches: GRID (``clips/grid_speakers``), LRS3 and MEAD (by name),
HDTF-style (manifest notes mention HDTF, or one of the 512x512 politician
crops), multi-face (manifest column ``faces`` = multi), other in-the-wild.
"""
from __future__ import annotations

from pathlib import PurePosixPath

GRID = "GRID"
LRS3 = "LRS3"
MEAD = "MEAD"
HDTF = "HDTF-style"
MULTI = "multi-face"
OTHER = "other in-the-wild"
#: Order of the groups in tables.
SOURCE_ORDER = (GRID, LRS3, MEAD, HDTF, MULTI, OTHER)
#: What each group holds, for the pages' notes.
SOURCE_NOTES = {
    GRID: "`clips/grid_speakers` (studio, frontal; sources known to be in sync)",
    LRS3: "name contains LRS3 (TED face crops)",
    MEAD: "name contains MEAD (1080p read speech)",
    HDTF: "manifest notes contain HDTF, or a 512x512 politician crop (Real3DPortrait May, DFRF french)",
    MULTI: "manifest `faces` = multi",
    OTHER: "every other dev clip",
}
#: 512x512 crops of politicians' addresses that the manifest does not call HDTF.
POLITICIAN_CROPS = ("yerfor__Real3DPortrait__May", "sstzal__DFRF__dataset__vids__french")


def source_group(rel: str, faces: str = "", notes: str = "") -> str:
    """The source group of a clip from its path relative to the data folder and its manifest row."""
    name = PurePosixPath(rel).name
    if rel.startswith(("clips/grid_speakers/", "clips/grid_s1/")):
        return GRID
    if "LRS3" in name:
        return LRS3
    if "MEAD" in name:
        return MEAD
    if "HDTF" in (notes or "") or any(name.startswith(p) for p in POLITICIAN_CROPS):
        return HDTF
    if (faces or "").strip().lower() == "multi":
        return MULTI
    return OTHER


def short_source(rel: str) -> str:
    """A short source name from a file name ``owner__repo__...``: the data set where the name carries one
    (MEAD, LRS3, MSDWild, HDTF, GRID), else the repository."""
    stem = PurePosixPath(rel).stem
    for key, label in (("MEAD", "MEAD"), ("LRS3", "LRS3"), ("MSDWILD", "MSDWild"), ("HDTF", "HDTF")):
        if key in stem:
            return label
    parts = stem.split("__")
    return parts[1] if len(parts) > 1 else parts[0]


def order_key(group: str) -> tuple:
    """Sort key: the fixed dev order first, then alphabetical."""
    return (SOURCE_ORDER.index(group), "") if group in SOURCE_ORDER else (len(SOURCE_ORDER), group.lower())
