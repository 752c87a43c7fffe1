"""Make ``examples/garden.mp4``, the clip the README's first command reconstructs.

The scene is real: the Mip-NeRF 360 "garden" scene (a table on a lawn, photographed all
round), as a Gaussian splat trained on those photos and flown round by a splat viewer
(``../shared/data/gsplat/viewer_garden_480p.mp4``, a screen capture from gsplat's
repository, Apache-2.0: see ``garden.LICENSE``). The camera sweeps an arc round the
table, as a handheld or generated orbit clip would.

This script keeps every frame of the capture, crops away the viewer's interface (its
"Connected" badge along the top and the axes gizmo in the bottom left corner) and the
dark line at the bottom, and encodes the frames again to H.264 at 24 frames a second
(the capture's 60 made a 1.4 s clip; slower is easier to watch and changes nothing for
the reconstruction, which picks frames by content) with the ffmpeg that imageio-ffmpeg
bundles.

    python examples/make_example.py
"""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "shared" / "data" / "gsplat" / "viewer_garden_480p.mp4"
TOP, BOTTOM = 24, 304  # rows kept: below the badge, above the gizmo and the dark line
FPS = 24


def main() -> None:
    reader = imageio_ffmpeg.read_frames(str(SOURCE))
    meta = reader.__next__()
    width, height = meta["size"]
    out = HERE / "garden.mp4"
    writer = imageio_ffmpeg.write_frames(
        str(out), (width, BOTTOM - TOP), fps=FPS, codec="libx264", pix_fmt_out="yuv420p",
        quality=None, macro_block_size=1,
        output_params=["-crf", "18", "-preset", "slow", "-movflags", "+faststart"])
    writer.send(None)
    n = 0
    for raw in reader:
        frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
        writer.send(np.ascontiguousarray(frame[TOP:BOTTOM]))
        n += 1
    writer.close()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {n} frames {width}x{BOTTOM - TOP})")


if __name__ == "__main__":
    main()
