"""What the workspace's safety costs: opening, committing and undoing a stage journal, and
the content fingerprints, on a finished workspace.

    python benchmarks/bench_journal.py WORKSPACE       # e.g. work/garden after README command 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from vid3d import workspace
from vid3d.pipeline import STAGES, stage_outputs
from vid3d.transaction import _begin, _commit, locked, rollback
from vid3d.workspace import Workspace, fingerprint_paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")  # a copy: the benchmark never touches the original
        shutil.copytree(args.workspace, ws.root, symlinks=True)
        files = sum(len(f) for _, _, f in os.walk(ws.root))
        size = sum(p.stat().st_size for p in ws.root.rglob("*") if p.is_file()) / 2**20
        times = {"open": [], "commit": [], "undo": []}
        with locked(ws, "bench_journal"):
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                _begin(ws, "render")
                t1 = time.perf_counter()
                _commit(ws)
                t2 = time.perf_counter()
                _begin(ws, "render")
                t3 = time.perf_counter()
                rollback(ws)
                t4 = time.perf_counter()
                times["open"].append(t1 - t0)
                times["commit"].append(t2 - t1)
                times["undo"].append(t4 - t3)
        outputs = [p for s in STAGES for p in stage_outputs(ws, s) if p.exists()]
        workspace._HASHES.clear()
        t0 = time.perf_counter()
        fingerprint_paths(outputs)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        fingerprint_paths(outputs)
        warm = time.perf_counter() - t0
    print(f"workspace: {files} files, {size:.1f} MiB")
    for k, v in times.items():
        print(f"journal {k:6s}: {1000 * min(v):7.1f} ms (best of {args.repeat})")
    print(f"content fingerprint of all stage outputs: {1000 * cold:.0f} ms, again {1000 * warm:.1f} ms")


if __name__ == "__main__":
    main()
