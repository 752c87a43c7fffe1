"""vid3d: a video in, a Gaussian splat scene and an orbit video out.

Module map (one line per module; ``tests/test_layout.py`` checks it against the code)::

    vid3d/cli.py                    the `vid3d` command line: thin typer commands
    vid3d/console.py                the terminal: rich console, progress, summary and batch tables
    vid3d/config.py                 typed stage configurations, presets, overrides, validation
    vid3d/errors.py                 the errors vid3d raises, each with a message and a hint
    vid3d/pipeline.py               stage order, skipping by manifest, the report
    vid3d/verdict.py                whether a clip can give 3D: stop, warn, and the figures why
    vid3d/transaction.py            workspace ownership, the writer's lock, undoing a failed stage
    vid3d/workspace.py              workspace paths, manifests, atomic writes, fingerprints
    vid3d/progress.py               the Reporter protocol the stages report through
    vid3d/device.py                 which torch device a run uses
    vid3d/doctor.py                 what this machine can do (`vid3d doctor`)
    vid3d/scene.py                  cameras and points of a scene, in numpy
    vid3d/camera_paths.py           camera paths for the rendered video: kinds, smoothness, JSON
    vid3d/coverage.py               how much of a camera's picture the clip observed well
    vid3d/auto_path.py              the `auto` path: chosen from the cameras, sized by coverage
    vid3d/stages/frames.py          stage 1: video frames to training images and masks
    vid3d/stages/poses.py           stage 2: camera poses with COLMAP (pycolmap)
    vid3d/stages/splat.py           stage 3: splat training and exports
    vid3d/stages/render.py          stage 4: the orbit video
    vid3d/video/decode.py           video decoding (PyAV): times, rotation, grey planes
    vid3d/video/encode.py           H.264 output through the bundled ffmpeg, previews, inspection
    vid3d/video/analysis.py         frame analysis: sharpness, cuts, bars, overlays, camera motion
    vid3d/video/motion.py           masks of what moves on its own (dense flow vs. two-view geometry)
    vid3d/sfm/colmap.py             the pycolmap adapter: features, matches, mapping, models
    vid3d/sfm/calibration.py        focal length from fundamental matrices
    vid3d/sfm/views.py              the posed training views of a workspace, undistorted
    vid3d/splats/model.py           Gaussian parameters, checkpoints, PLY and .splat exports
    vid3d/splats/trainer.py         training: step, evaluation, checkpoints, densification
    vid3d/splats/strategies.py      gsplat's densification strategies, made to run on CPU too
    vid3d/splats/cleanup.py         floaters and outliers removed before rendering and export
    vid3d/splats/losses.py          L1, SSIM, PSNR, the robust mask
    vid3d/splats/rasterize.py       one rasterize() for every backend (gsplat CUDA, CPU, torch)
    vid3d/splats/_cpu_kernel.py     the numba CPU rasterizer, forward and backward
    vid3d/splats/_projection.py     projection, SH and tile intersection for the CPU backends
    vid3d/splats/_torch_rasterizer.py  the pure-PyTorch reference rasterizer
    vid3d/splats/_malloc.py         allocator tuning for CPU training
    vid3d/batch/runner.py           `vid3d batch`: plan, schedule, record
    vid3d/batch/discovery.py        finding the videos of a folder, workspace names
    vid3d/batch/configs.py          per-folder and per-video configuration files
    vid3d/batch/jobs.py             jobs, result rows, summary.csv and summary.json
    vid3d/batch/worker.py           one video in a worker process or Ray task
    vid3d/batch/gpus.py             GPUs for workers: masks, slots, Ray requests
    vid3d/batch/local.py            the local process scheduler
    vid3d/batch/on_ray.py           the Ray scheduler
    vid3d/batch/monitor.py          the batch monitor protocol
"""

__version__ = "0.1.0"
