"""Pictures of synthetic people: the frames of one video (a static background scene and, per frame, the person's
face under smooth nuisances: pose swings, lighting, pixel noise, JPEG quality) and single photographs (each with
its own scene, pose and light), encoded as JPEG."""

import dataclasses
import math

import numpy as np
import simplejpeg
from PIL import Image, ImageDraw

from pasn_jax.data.synthetic.face import (COLOR_CAST, JPEG_QUALITY, LIGHT_GAIN, LIGHT_GRADIENT, LIGHT_SWING,
                                          NOISE_SIGMA, POSE_ROTATION, POSE_SCALE, POSE_SHIFT, SUPERSAMPLE, Canvas,
                                          Identity, Pose, colour, draw_face, parts_mask)

# A photograph's pose, around the person's own tilt: rotation (degrees), scale and shift (fraction of the image).
PHOTO_ROTATION = 8.0
PHOTO_SCALE = 0.06
PHOTO_SHIFT = 0.03


def render_background(rng: np.random.Generator, size: int) -> Image.Image:
    """A static scene behind a person: a gradient wall with a few coloured shapes. Drawn at SUPERSAMPLE x size."""
    side = size * SUPERSAMPLE
    top, bottom = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ramp = np.linspace(0, 1, side, dtype=np.float32)[:, None, None]
    wall = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (side, side, 3))
    image = Image.fromarray(wall.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 7)):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * side
        w, h = rng.uniform(0.1, 0.6, 2) * side
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x0 + w, y0 + h), fill=colour(rng.uniform(0, 255, 3)))
    return image


def _light(identity: Identity, size: int) -> np.ndarray:
    """The person's directional light and colour cast over the image. [S, S, 3]"""
    grid = (np.arange(size, dtype=np.float32) - size / 2) / size
    direction = math.cos(identity.light_angle) * grid[None, :] + math.sin(identity.light_angle) * grid[:, None]
    return (1 + identity.light_gradient * direction)[..., None] * np.asarray(identity.cast, np.float32)


def _draw(background: Image.Image, identity: Identity, pose: Pose, intensity: np.ndarray, size: int) -> np.ndarray:
    image = background.copy()
    draw_face(Canvas(image, identity, pose, size), identity, intensity)
    return np.asarray(image.reduce(SUPERSAMPLE), np.float32)  # [S, S, 3]


def _encode(pixels: np.ndarray, quality: int) -> bytes:
    frame = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
    return simplejpeg.encode_jpeg(frame, quality=quality, colorspace="RGB")


class FrameRenderer:
    """Renders the frames of one video of `identity` in front of `background`, with smooth nuisance trajectories
    drawn from the video's seed (SeedSequence entropy)."""

    def __init__(self, identity: Identity, seed: tuple, size: int, background: Image.Image):
        self.identity = identity
        self.rng = np.random.default_rng(list(seed) + [3])
        self.size = size
        self.background = background
        u = self.rng.uniform
        self.waves = {k: (u(0.01, 0.06), u(0, 2 * math.pi)) for k in ("rot", "scale", "x", "y", "light")}
        self.light = _light(identity, size)
        self.noise = self.rng.standard_normal((2 * size, 2 * size, 3)).astype(np.float32)  # cropped per frame

    def _wave(self, key: str, t: int) -> float:
        freq, phase = self.waves[key]
        return math.sin(2 * math.pi * freq * t + phase)

    def pose(self, t: int) -> Pose:
        """The head's pose in frame t (0-based)."""
        return Pose(rotation=POSE_ROTATION[1] * self._wave("rot", t), scale=1 + POSE_SCALE * self._wave("scale", t),
                    shift=(POSE_SHIFT * self._wave("x", t), POSE_SHIFT * self._wave("y", t)))

    def parts_mask(self, t: int) -> np.ndarray:
        """Where frame t shows the face's expressive parts (face.parts_mask). bool [S, S]"""
        return parts_mask(self.identity, self.pose(t), self.size)

    def jpeg(self, t: int, intensity: np.ndarray) -> bytes:
        pixels = _draw(self.background, self.identity, self.pose(t), intensity, self.size)
        gain = self.identity.gain * (1 + LIGHT_SWING * self._wave("light", t))
        oy, ox = self.rng.integers(0, self.size, 2)
        sigma = self.rng.uniform(*NOISE_SIGMA)
        pixels = pixels * (self.light * gain) + sigma * self.noise[oy:oy + self.size, ox:ox + self.size]
        return _encode(pixels, int(self.rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))


def photograph(identity: Identity, intensity: np.ndarray, size: int, rng: np.random.Generator) -> bytes:
    """One photograph of a person showing AU intensities [12]: its own scene, pose, light, noise and JPEG quality,
    all drawn from `rng` (the person's shape, colours and tilt stay theirs)."""
    background = render_background(rng, size)
    pose = Pose(rotation=rng.uniform(-PHOTO_ROTATION, PHOTO_ROTATION), scale=1 + rng.uniform(-PHOTO_SCALE, PHOTO_SCALE),
                shift=tuple(rng.uniform(-PHOTO_SHIFT, PHOTO_SHIFT, 2)))
    lit = dataclasses.replace(identity, gain=rng.uniform(*LIGHT_GAIN), light_angle=rng.uniform(0, 2 * math.pi),
                              light_gradient=rng.uniform(0, LIGHT_GRADIENT),
                              cast=tuple(rng.uniform(1 - COLOR_CAST, 1 + COLOR_CAST, 3)))
    pixels = _draw(background, identity, pose, intensity, size) * (_light(lit, size) * lit.gain)
    pixels += np.float32(rng.uniform(*NOISE_SIGMA)) * rng.standard_normal((size, size, 3), np.float32)
    return _encode(pixels, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
