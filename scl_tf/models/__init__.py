"""Segmentation models: DeepLabV3+ on WRN38, ResNet-50/101, MobileNetV2 and EfficientNet-Lite0."""

from scl_tf.models.deeplabv3plus import BACKBONES, build_model

__all__ = ["BACKBONES", "build_model"]
