"""The frames of one synthetic video: a static background scene and, per frame, the person's face under smooth
nuisances (pose swings, lighting, pixel noise, JPEG quality), encoded as JPEG."""

import math

import numpy as np
import simplejpeg
from PIL import Image, ImageDraw

from pasn_jax.data.synthetic.face import (JPEG_QUALITY, LIGHT_SWING, NOISE_SIGMA, POSE_ROTATION, POSE_SCALE, POSE_SHIFT,
                                          SUPERSAMPLE, Canvas, Identity, Pose, colour, draw_face)


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
        grid = (np.arange(size, dtype=np.float32) - size / 2) / size
        ident = self.identity
        direction = math.cos(ident.light_angle) * grid[None, :] + math.sin(ident.light_angle) * grid[:, None]
        self.light = (1 + ident.light_gradient * direction)[..., None] * np.asarray(ident.cast, np.float32)  # [S,S,3]
        self.noise = self.rng.standard_normal((2 * size, 2 * size, 3)).astype(np.float32)  # cropped per frame

    def _wave(self, key: str, t: int) -> float:
        freq, phase = self.waves[key]
        return math.sin(2 * math.pi * freq * t + phase)

    def jpeg(self, t: int, intensity: np.ndarray) -> bytes:
        pose = Pose(rotation=POSE_ROTATION[1] * self._wave("rot", t), scale=1 + POSE_SCALE * self._wave("scale", t),
                    shift=(POSE_SHIFT * self._wave("x", t), POSE_SHIFT * self._wave("y", t)))
        image = self.background.copy()
        draw_face(Canvas(image, self.identity, pose, self.size), self.identity, intensity)
        pixels = np.asarray(image.reduce(SUPERSAMPLE), np.float32)  # [S, S, 3]
        gain = self.identity.gain * (1 + LIGHT_SWING * self._wave("light", t))
        oy, ox = self.rng.integers(0, self.size, 2)
        sigma = self.rng.uniform(*NOISE_SIGMA)
        pixels = pixels * (self.light * gain) + sigma * self.noise[oy:oy + self.size, ox:ox + self.size]
        frame = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
        return simplejpeg.encode_jpeg(frame, quality=int(self.rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)),
                                      colorspace="RGB")
