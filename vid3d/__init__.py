"""vid3d: a video in, a Gaussian splat scene and an orbit video out."""

__version__ = "0.1.0"
