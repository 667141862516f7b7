"""dlib's face embedding in a process of its own, so that it runs beside the photo work instead of under its lock.

dlib's ResNet (~80 ms a face here) holds Python's GIL while it runs: in one process, the threads that decode, crop
and resize the other photos wait for it. `FaceWorker` starts `python -m faceswap_kohya.faces.worker`, which loads
dlib's 5-point predictor and ResNet as it starts (while the caller decodes its first photos) and answers one face
at a time over its pipes: the face's crop (RGB bytes) and box in, its 128-d embedding out. It makes the same dlib
calls as in-process (`embedding_of`), so the same numbers. The caller's thread waits on the pipe without the GIL.
When the worker cannot be started or dies, `embedding` returns None and the caller embeds in its own process.
(The 68 landmarks stay in-process: there they overlap the embeddings; in one worker they would wait for them.)
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
from typing import Optional

import numpy as np

HEADER = struct.Struct("<6i")  # height, width, left, top, right, bottom
DIMS = 128


def embedding_of(dlib, landmarks5, resnet, arr: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The 128-d embedding of the face at `box` in `arr` (RGB uint8): aligned on its 5 landmarks, a 150 px chip."""
    shape = landmarks5(arr, dlib.rectangle(*box))
    chip = dlib.get_face_chip(arr, shape, size=150, padding=0.25)
    return np.asarray(resnet.compute_face_descriptor(chip), dtype=np.float64)


class FaceWorker:
    """The worker process, one face at a time (threads take turns; each waits on the pipe without the GIL)."""

    def __init__(self):
        self.lock = threading.Lock()
        try:
            self.proc: Optional[subprocess.Popen] = subprocess.Popen(
                [sys.executable, "-m", "faceswap_kohya.faces.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL)
        except OSError:
            self.proc = None

    def embedding(self, arr: np.ndarray, box: tuple[int, int, int, int]) -> Optional[np.ndarray]:
        """The worker's answer, or None when it is gone (then the caller computes it itself)."""
        arr = np.ascontiguousarray(arr, dtype=np.uint8)
        size = 1 + 8 * DIMS
        with self.lock:
            if self.proc is None:
                return None
            try:
                self.proc.stdin.write(HEADER.pack(arr.shape[0], arr.shape[1], *box) + arr.tobytes())
                self.proc.stdin.flush()
                answer = self.proc.stdout.read(size)
            except (OSError, ValueError):
                answer = b""
            if len(answer) != size or answer[:1] != b"\x01":
                self.close()
                return None
            return np.frombuffer(answer[1:], dtype="<f8").copy()

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # the worker ends at the end of its input
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            proc.stdout.close()

    def __enter__(self) -> "FaceWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve() -> None:
    """The worker: faces from stdin until it ends, embeddings to stdout (a failed one: a 0 byte, then zeros)."""
    from faceswap_kohya.faces.detect import dlib_module, model_file

    dlib = dlib_module()
    landmarks5 = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    resnet = dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))
    read, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = read.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        h, w, *box = HEADER.unpack(header)
        data = read.read(h * w * 3)
        if len(data) < h * w * 3:
            return
        try:
            vector = embedding_of(dlib, landmarks5, resnet, np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3), tuple(box))
            out.write(b"\x01" + np.asarray(vector, dtype="<f8").tobytes())
        except Exception:  # noqa: BLE001 - the caller embeds this face itself
            out.write(b"\x00" + bytes(8 * DIMS))
        out.flush()


if __name__ == "__main__":
    serve()
