"""Face detection, alignment and tracking (paper §4.1: every face cropped to 224x224 before anything else).

MTCNN (detector.py, networks.py) with the `mtcnn` package's weights (weights.py, read without TensorFlow),
five-point alignment to the insightface template (align.py), IoU tracks (track.py), PyAV video frames (video.py)
and the crop CLI (crop.py, `python -m pasn_jax.faces crop --out DIR INPUT...`).

    from pasn_jax.faces import Detector
    from pasn_jax.faces.align import align
    detector = Detector()
    for face in detector.detect(rgb):  # uint8 [H, W, 3]
        crop, transform = align(rgb, face.landmarks, 224)
"""

from pasn_jax.faces.detector import Detector, Face

__all__ = ["Detector", "Face"]
