"""Structure from motion: the pycolmap adapter.

Only this sub-package touches pycolmap objects. :func:`load_scene` (in :mod:`.views`)
turns the workspace's COLMAP model into the posed training views, a
:class:`vid3d.scene.Scene`; :mod:`.colmap` wraps feature extraction, matching and
mapping for :mod:`vid3d.stages.poses`; :mod:`.calibration` self-calibrates the focal
length.
"""

from vid3d.sfm.views import load_scene

__all__ = ["load_scene"]
