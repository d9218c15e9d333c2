"""Classifiers trained from scratch for the neural-collapse analysis: features, then one linear head."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """``head(features(x))``; ``forward`` returns ``(features [b, d], logits [b, C])``."""

    def __init__(self, features: nn.Module, width: int, num_classes: int, bias: bool) -> None:
        super().__init__()
        self.features = features
        self.head = nn.Linear(width, num_classes, bias=bias)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images)  # [b, d]
        return h, self.head(h)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def small_cnn(width: int) -> tuple[nn.Module, int]:
    """Three conv blocks (width, 2 width, 4 width channels), each halving the resolution, then global
    average pooling: ``4 * width`` non-negative features."""
    layers = nn.Sequential(
        _block(3, width), nn.MaxPool2d(2),
        _block(width, 2 * width), nn.MaxPool2d(2),
        _block(2 * width, 4 * width), nn.MaxPool2d(2),
        _block(4 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return layers, 4 * width


def resnet18_features(image_size: int) -> tuple[nn.Module, int]:
    """torchvision's ResNet-18 up to its pooled 512 features, randomly initialised. For images of 64 px or
    less the stem is a 3x3 stride-1 convolution without max-pooling (the usual CIFAR variant)."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if image_size <= 64:
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, 512


def build_classifier(arch: str, num_classes: int, *, width: int, bias: bool, image_size: int) -> Classifier:
    """The classifier named by ``arch`` (`cnn` or `resnet18`) for ``num_classes`` classes."""
    if arch == "cnn":
        features, dim = small_cnn(width)
    elif arch == "resnet18":
        features, dim = resnet18_features(image_size)
    else:
        raise ValueError(f"unknown classifier arch {arch!r}; use cnn or resnet18")
    if dim < num_classes - 1:
        raise ValueError(f"{dim} features cannot hold a simplex of {num_classes} classes; raise classifier.width")
    return Classifier(features, dim, num_classes, bias)
