"""Structure from motion: the pycolmap adapter.

Only this sub-package touches pycolmap objects. :func:`load_scene` turns the
workspace's COLMAP model into a :class:`vid3d.scene.Scene`; :mod:`.colmap` wraps
feature extraction, matching and mapping for :mod:`vid3d.stages.poses`.
"""

from .scene import load_scene, mask_path, undistorted_dir

__all__ = ["load_scene", "mask_path", "undistorted_dir"]
