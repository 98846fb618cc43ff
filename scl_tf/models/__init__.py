"""Segmentation models: DeepLabV3+ on WRN38, ResNet-50/101 and MobileNetV2."""

from scl_tf.models.deeplabv3plus import build_model

__all__ = ["build_model"]
