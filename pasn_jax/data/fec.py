"""Google FEC (Facial Expression Comparison) triplets: the CSV files, and their conversion to triplet shards.

Each CSV line (no header): for each of the three faces its URL and its box normalised by the image size (top-left
column, bottom-right column, top-left row, bottom-right row), so columns 0..14; column 15 the triplet type; then
(annotator id, answer) pairs, the answer naming the face (1-based) that differs most from the other two. A triplet's
odd one out is the majority answer (ties are dropped); the shard record holds the two similar faces first, in CSV
order, the odd one last.
"""

import collections
import csv
import dataclasses
import os
import posixpath
import urllib.parse

from PIL import Image

from pasn_jax.data import conversion

TRIPLET_TYPES = {"ONE_CLASS_TRIPLET": 1, "TWO_CLASS_TRIPLET": 2, "THREE_CLASS_TRIPLET": 3}
MARGINS = {1: 0.1, 2: 0.2, 3: 0.2}  # FECNet's triplet-loss margin by triplet type
_FACE_COLUMNS = 5  # URL, left, right, top, bottom
_FIXED_COLUMNS = 3 * _FACE_COLUMNS + 1  # three faces, then the triplet type


class FECError(ValueError):
    """Bad FEC input; the message names the file and line and what was expected."""


@dataclasses.dataclass(frozen=True)
class Face:
    url: str
    box: tuple[float, float, float, float]  # left, right, top, bottom, normalised by the image width / height


@dataclasses.dataclass(frozen=True)
class Triplet:
    faces: tuple[Face, Face, Face]
    triplet_type: int  # how many expression classes the three faces show: 1, 2 or 3
    answers: tuple[int, ...]  # each annotator's odd one out, 1-based
    line: int  # of the CSV file

    def odd_one_out(self) -> int | None:
        """0-based index of the majority answer; None on a tie between the top answers."""
        ranked = collections.Counter(self.answers).most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            return None
        return ranked[0][0] - 1


def _parse_row(row: list[str], where: str) -> Triplet:
    row = [field.strip() for field in row]
    if len(row) < _FIXED_COLUMNS + 2 or (len(row) - _FIXED_COLUMNS) % 2:
        raise FECError(f"{where}: expected {_FIXED_COLUMNS} columns (3 x URL and 4 box values, the triplet type) "
                       f"then one or more (annotator, answer) pairs, got {len(row)} columns")
    faces = []
    for k in range(3):
        url, *values = row[k * _FACE_COLUMNS:(k + 1) * _FACE_COLUMNS]
        try:
            box = tuple(float(v) for v in values)
        except ValueError:
            raise FECError(f"{where}: face {k + 1}: expected 4 box numbers, got {','.join(values)}") from None
        left, right, top, bottom = box
        if not (all(0.0 <= v <= 1.0 for v in box) and left < right and top < bottom):
            raise FECError(f"{where}: face {k + 1}: expected a box (left, right, top, bottom) in [0, 1] with "
                           f"left < right and top < bottom, got {','.join(values)}")
        faces.append(Face(url, box))
    kind = row[_FIXED_COLUMNS - 1]
    if kind not in TRIPLET_TYPES:
        raise FECError(f"{where}: expected a triplet type in {', '.join(TRIPLET_TYPES)}, got '{kind}'")
    answers = row[_FIXED_COLUMNS + 1::2]
    if any(a not in ("1", "2", "3") for a in answers):
        raise FECError(f"{where}: expected annotations in 1..3 (the odd face), got {','.join(answers)}")
    return Triplet(tuple(faces), TRIPLET_TYPES[kind], tuple(int(a) for a in answers), 0)


def parse_csv(path: str) -> list[Triplet]:
    """The triplets of one FEC CSV file, in file order (blank lines skipped)."""
    if not os.path.isfile(path):
        raise FECError(f"{path}: missing file")
    triplets = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                line = reader.line_num
                if not row or not any(field.strip() for field in row):
                    continue
                triplets.append(dataclasses.replace(_parse_row(row, f"{path}:{line}"), line=line))
    except UnicodeDecodeError:
        raise FECError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as e:
        raise FECError(f"{path}:{reader.line_num}: not a valid CSV line ({e})") from None
    return triplets


def file_name(url: str) -> str:
    """The URL's last path component, without query string or fragment."""
    return posixpath.basename(urllib.parse.urlsplit(url).path)


def read_url_map(path: str, images_dir: str) -> dict[str, str]:
    """URL -> local file of a `url,path` CSV (paths relative to images_dir unless absolute)."""
    if not os.path.isfile(path):
        raise FECError(f"{path}: missing file")
    mapping = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if not row:
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise FECError(f"{path}:{reader.line_num}: expected 'url,path', got {len(row)} columns")
            url, local = row[0].strip(), os.path.join(images_dir, row[1].strip())
            if mapping.get(url, local) != local:
                raise FECError(f"{path}:{reader.line_num}: {url} is mapped twice, to {mapping[url]} and {local}")
            mapping[url] = local
    return mapping


def image_paths(triplets: list[Triplet], images_dir: str, url_map: str | None = None) -> dict[str, str]:
    """URL -> local file for every face of `triplets`: `images_dir/<the URL's file name>`, unless `url_map` (a CSV
    of `url,path` lines) lists the URL."""
    mapping = read_url_map(url_map, images_dir) if url_map else {}
    return {face.url: mapping.get(face.url) or os.path.join(images_dir, file_name(face.url))
            for t in triplets for face in t.faces}


class _Crops:
    """JPEG crops of the kept triplets' faces: each image decoded once (all its boxes cropped then), each crop
    kept only until its last use, so memory holds the pending crops, not the images."""

    def __init__(self, kept: list[tuple[Triplet, list[int]]], paths: dict[str, str], size: int, csv_path: str):
        self._paths, self._size, self._csv = paths, size, csv_path
        self._last, self._first_line = {}, {}
        self._boxes = collections.defaultdict(set)
        for i, (triplet, _) in enumerate(kept):
            for face in triplet.faces:
                key = (paths[face.url], face.box)
                self._last[key] = i
                self._first_line.setdefault(key, triplet.line)
                self._boxes[key[0]].add(face.box)
        self._ready: dict[tuple, bytes] = {}

    def _decode(self, path: str) -> None:
        boxes = self._boxes.pop(path)
        line = min(self._first_line[(path, box)] for box in boxes)
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise FECError(f"{path}: not a decodable image ({e}); needed by {self._csv}:{line}") from None
        width, height = image.size
        for box in sorted(boxes):
            left, right, top, bottom = box
            pixels = (round(left * width), round(top * height), round(right * width), round(bottom * height))
            if pixels[0] >= pixels[2] or pixels[1] >= pixels[3]:
                raise FECError(f"{self._csv}:{self._first_line[(path, box)]}: face box {box} is empty on the "
                               f"{width}x{height} image {path} (pixel box {pixels})")
            crop = image.crop(pixels).resize((self._size, self._size), Image.Resampling.BILINEAR)
            self._ready[(path, box)] = conversion.encode_crop(crop)

    def faces(self, i: int, triplet: Triplet, order: list[int]) -> list[bytes]:
        """The crops of kept triplet `i`'s faces in `order` (triplets are asked for in order)."""
        keys = [(self._paths[triplet.faces[k].url], triplet.faces[k].box) for k in order]
        for key in keys:
            if key not in self._ready:
                self._decode(key[0])
        crops = [self._ready[key] for key in keys]
        for key in set(keys):
            if self._last[key] == i:
                del self._ready[key]
        return crops


def convert(csv_path: str, images_dir: str, out: str, split: str, *, url_map: str | None = None, size: int = 112,
            num_shards: int = 4, source: str = "fec", skip_missing: bool = False) -> dict:
    """Converts one FEC CSV file to the triplet shards of `split` in `out` (faces cropped by their boxes, resized to
    size x size, JPEG); returns the split's metadata. On any error `out` holds no `<split>.json`."""
    if num_shards < 1 or size < 1:
        raise FECError(f"--num-shards and --size must be >= 1, got {num_shards} and {size}")
    conversion.forget_split(out, split)
    triplets = parse_csv(csv_path)
    paths = image_paths(triplets, images_dir, url_map)
    kept, ties, missing = [], 0, 0
    for triplet in triplets:
        odd = triplet.odd_one_out()
        if odd is None:
            ties += 1
            continue
        absent = [(k, paths[f.url]) for k, f in enumerate(triplet.faces) if not os.path.isfile(paths[f.url])]
        if absent and skip_missing:
            missing += 1
            continue
        if absent:
            k, path = absent[0]
            raise FECError(f"{csv_path}:{triplet.line}: face {k + 1}: image {path} missing "
                           f"(URL {triplet.faces[k].url})")
        kept.append((triplet, [k for k in range(3) if k != odd] + [odd]))
    crops = _Crops(kept, paths, size, csv_path)
    name = os.path.basename(csv_path)

    def example(item: tuple[int, tuple[Triplet, list[int]]]) -> tuple[dict, tuple[int, int]]:
        i, (triplet, order) = item
        return ({"images": crops.faces(i, triplet, order), "triplet_type": triplet.triplet_type,
                 "key": f"{name}:{triplet.line}"}, (size, size))

    counts = {"lines": len(triplets), "ties_dropped": ties, "missing_images_skipped": missing}
    return conversion.write_split(out, split, list(enumerate(kept)), example, num_shards=num_shards, source=source,
                                  counts=counts, kind="triplet")


def describe(metadata: dict) -> str:
    """One line of counts of a converted FEC split."""
    types = ", ".join(f"{n} {k.replace('_', '-')}" for k, n in metadata["triplet_types"].items())
    return (f"{metadata['split']}: {metadata['num_records']} triplets ({types}) in {len(metadata['shards'])} shards "
            f"from {metadata['lines']} lines; {metadata['ties_dropped']} ties dropped, "
            f"{metadata['missing_images_skipped']} with missing images skipped")
