"""scl-tf: semi-supervised semantic segmentation with the structured consistency loss."""

__version__ = "0.1.0"
