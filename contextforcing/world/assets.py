"""The fixed vocabulary of the synthetic world: scene classes, background palettes, subject identities.

Everything here is constant data plus pure functions that draw it. Colours are integer RGB triples in
[0, 255]; masks and images are torch tensors.

Shape legend:
    S  sprite side in pixels          H, W  frame height / width in pixels

A subject's identity is a (colour, shape, texture) triple. Identities are numbered
``((colour * num_shapes) + shape) * num_textures + texture`` over the first ``num_colours`` colours,
``num_shapes`` shapes and ``num_textures`` textures of the tables below. Scene classes choose the
background pattern only; they say nothing about the subject, whose identity must be remembered from the
video itself.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "BACKGROUND_PALETTES",
    "CUE_COLOUR",
    "DOOR_COLOUR",
    "GATE_COLOUR",
    "GATE_LIT_COLOUR",
    "SCENE_CLASSES",
    "SHAPES",
    "SUBJECT_COLOURS",
    "TEXTURES",
    "SceneClass",
    "SubjectIdentity",
    "background_image",
    "identity_catalogue",
    "shape_mask",
    "sprite_image",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class SceneClass:
    """A scene class: the prompt of an episode and the background pattern it implies."""

    name: str
    """Short name of the class."""
    pattern: str
    """Background pattern: "horizontal", "vertical", "checker" or "diagonal"."""
    prompt: str
    """The text prompt of the class; it never mentions the subject's identity."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SubjectIdentity:
    """What a subject looks like (fixed for the episode in version 1; changed at the gate in version 2)."""

    index: int
    """Position in the identity catalogue."""
    colour: str
    """Name of the flat colour (a key of SUBJECT_COLOURS)."""
    shape: str
    """One of SHAPES."""
    texture: str
    """One of TEXTURES."""


SCENE_CLASSES: tuple[SceneClass, ...] = (
    SceneClass(
        name="hall", pattern="horizontal", prompt="a visitor comes and goes in a hall with horizontal bands"
    ),
    SceneClass(
        name="gallery",
        pattern="vertical",
        prompt="a visitor comes and goes in a gallery with vertical panels",
    ),
    SceneClass(name="courtyard", pattern="checker", prompt="a visitor comes and goes in a tiled courtyard"),
    SceneClass(
        name="attic", pattern="diagonal", prompt="a visitor comes and goes in an attic with slanted beams"
    ),
)

SUBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40),
    "green": (40, 200, 70),
    "blue": (50, 90, 240),
    "yellow": (240, 215, 40),
    "magenta": (215, 50, 215),
    "cyan": (40, 215, 215),
    "orange": (245, 135, 30),
    "white": (245, 245, 245),
}

SHAPES: tuple[str, ...] = ("square", "disc", "cross")
TEXTURES: tuple[str, ...] = ("solid", "striped")

# Muted two-tone palettes, so that saturated subjects always stand out from the background.
BACKGROUND_PALETTES: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((70, 88, 110), (98, 118, 140)),
    ((112, 86, 70), (140, 112, 96)),
    ((78, 106, 80), (102, 132, 102)),
    ((100, 90, 122), (128, 116, 150)),
)

DOOR_COLOUR: tuple[int, int, int] = (24, 24, 24)
CUE_COLOUR: tuple[int, int, int] = (255, 250, 200)
GATE_COLOUR: tuple[int, int, int] = (52, 52, 60)
GATE_LIT_COLOUR: tuple[int, int, int] = (255, 250, 200)

_PATTERN_PERIOD = 16


@functools.cache
def identity_catalogue(num_colours: int, num_shapes: int, num_textures: int) -> tuple[SubjectIdentity, ...]:
    """All identities of a world, in index order (built once per catalogue size: immutable)."""
    colours = list(SUBJECT_COLOURS)[:num_colours]
    identities = []
    for colour in colours:
        for shape in SHAPES[:num_shapes]:
            for texture in TEXTURES[:num_textures]:
                identities.append(
                    SubjectIdentity(index=len(identities), colour=colour, shape=shape, texture=texture)
                )
    return tuple(identities)


def shape_mask(shape: str, size: int) -> Tensor:
    """Boolean mask [S, S] of a sprite shape."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    if shape == "square":
        return torch.ones(size, size, dtype=torch.bool)
    if shape == "disc":
        return x.square() + y.square() <= (size / 2) ** 2
    if shape == "cross":
        half_arm = size / 4
        return (x.abs() < half_arm) | (y.abs() < half_arm)
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def sprite_image(identity: SubjectIdentity, size: int) -> tuple[Tensor, Tensor]:
    """The sprite of an identity.

    Returns:
        (image [3, S, S] float in [0, 255], mask [S, S] bool).
    """
    colour = torch.tensor(SUBJECT_COLOURS[identity.colour], dtype=torch.float32)
    image = colour.view(3, 1, 1).expand(3, size, size).clone()
    if identity.texture == "striped":
        index = torch.arange(size)
        stripes = ((index.view(-1, 1) + index.view(1, -1)) // 4) % 2 == 1
        image = torch.where(stripes, image * 0.55, image)
    elif identity.texture != "solid":
        raise ValueError(f"texture must be one of {TEXTURES}, got {identity.texture!r}")
    return image.round(), shape_mask(identity.shape, size)


def background_image(pattern: str, palette: int, height: int, width: int) -> Tensor:
    """The static background [3, H, W] float in [0, 255] of a scene pattern and palette."""
    y = torch.arange(height).view(-1, 1).expand(height, width)
    x = torch.arange(width).view(1, -1).expand(height, width)
    half = _PATTERN_PERIOD // 2
    if pattern == "horizontal":
        second = (y // half) % 2 == 1
    elif pattern == "vertical":
        second = (x // half) % 2 == 1
    elif pattern == "checker":
        second = ((x // half) + (y // half)) % 2 == 1
    elif pattern == "diagonal":
        second = ((x + y) // math.ceil(half * 1.5)) % 2 == 1
    else:
        raise ValueError(f"unknown background pattern {pattern!r}")
    first_colour, second_colour = (
        torch.tensor(c, dtype=torch.float32).view(3, 1, 1) for c in BACKGROUND_PALETTES[palette]
    )
    return torch.where(second.unsqueeze(0), second_colour, first_colour)
