"""Live likeness: the trainer's sample images scored against the person's photos while it trains.

`LiveLikeness(run, preset, emit)` watches the run's sample folder (`model/sample/`) from a worker thread of its
own: it looks at the folder's modification time once a second and does nothing else until a sample image appears
(no work per training step; the pipe reader only hands it the last step and epoch). The scoring itself runs in a
child process (`SampleScorer`: one worker of a `spawn` ProcessPoolExecutor, started on the first sample, at low
priority): dlib holds Python's GIL while it detects and embeds, so in this process the pipe reader's events would
wait that long (about a second a sample); here the worker thread only waits on the child's answer, which holds no
lock. Each new sample, once it is completely written, gets one `SampleLikeness` event: its largest face scored
against the training photos (`identity`) and the held-out photos (`held_out`), with the preset's face model, as
`evaluate` scores a generated image. A sample with no face says so ("no face found in sample ..."), as the
random-weight check model's samples do. A sample that does not decode yet (half written) is looked at again; one
still unreadable when the training ends is reported as such.

The face model and the photos' embeddings are loaded once in the child, when the first sample appears. When that
fails (no faces extra or dlib, no face in the training photos) the samples are not scored and one `Warning` says
why; no failure here ever reaches the training.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

from faceswap_kohya.errors import UserError
from faceswap_kohya.events import Epoch, OnEvent, SampleLikeness, Step, Warning
from faceswap_kohya.runs.artifacts import layout_of, photo_folders, sample_when
from faceswap_kohya.runs.layout import instance_dir, validation_dir

POLL_S = 1.0  # how often the sample folder is looked at
NICE = 10  # the worker thread's niceness: on a CPU-only machine the trainer comes first
STOP_WAIT_S = 120.0  # after the training: how long the last samples may take to score
SAMPLE_SIDE = 512  # faces are looked for on a copy this long: a sample's face is large (1024 px samples, 2 cores:
# about 1 s a sample, 4 s at detect's default 800 px with no face in the sample; benchmarks/bench_live_likeness.py)
NOT_YET = object()  # a sample that does not decode yet (being written): looked at again
CHILD_CONTEXT = "spawn"  # a fresh interpreter: nothing of the trainer's wrapper (threads, locks) is inherited


def wanted(preset) -> bool:
    """Whether the trainer writes samples during this training (prompts, and every N epochs or steps)."""
    s = preset.sampling
    return bool(s.prompts) and bool(s.every_n_epochs or s.every_n_steps)


class LiveLikeness:
    """Scores each sample image the trainer writes into `run`'s sample folder and `emit`s a `SampleLikeness`.

    `start()` starts the worker; `seen(event)` (called with every trainer event, costs an attribute store) keeps
    the step and epoch a sample without them in its name is attributed to; `stop()` scores what is left
    (unless `score_rest=False`, e.g. after Ctrl-C) and returns once the worker is done; nothing is emitted after."""

    def __init__(self, run, preset, emit: OnEvent, poll_s: float = POLL_S):
        self.run, self.preset, self.poll_s = layout_of(run), preset, poll_s
        self.step: Optional[int] = None
        self.epoch: Optional[int] = None
        self._emit = emit
        self._open = True
        self._emit_lock = threading.Lock()
        self._stop = threading.Event()
        self._score_rest = True
        self._looked: dict[str, tuple[int, int]] = {}  # sample name → (size, mtime) when last looked at
        self._done: set[str] = set()
        self._scoring = None  # the SampleScorer (its child process); False once scoring is off
        self.thread = threading.Thread(target=self._loop, name="live-likeness", daemon=True)

    def start(self) -> "LiveLikeness":
        self.thread.start()
        return self

    def seen(self, event) -> None:
        if isinstance(event, Step):
            if event.unit == "step":
                self.step = event.step
        elif isinstance(event, Epoch):
            self.epoch = event.epoch

    def stop(self, score_rest: bool = True, timeout: float = STOP_WAIT_S) -> None:
        self._score_rest = score_rest
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        with self._emit_lock:
            self._open = False

    # ------------------------------------------------------------ the worker
    def _send(self, event) -> None:
        with self._emit_lock:
            if not self._open:
                return
            try:
                self._emit(event)
            except Exception:  # noqa: BLE001 - a consumer's failure must not end the scoring, nor the training
                pass

    def _loop(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)  # this thread only (Linux)
        except (AttributeError, OSError):
            pass
        try:
            self._watch()
        finally:
            self._close()

    def _watch(self) -> None:
        folder, last, pending = self.run.samples, None, False
        while True:
            stopping = self._stop.wait(self.poll_s)
            if stopping and not self._score_rest:
                return
            try:
                changed = os.stat(folder).st_mtime_ns
            except OSError:
                changed = None
            if changed is not None and (changed != last or pending or stopping):
                last = changed
                try:
                    pending = self._look(folder, final=stopping)
                except Exception:  # noqa: BLE001 - never into the training
                    pending = False
            if stopping or self._scoring is False:
                return

    def _look(self, folder: Path, final: bool) -> bool:
        """Score the samples that are completely written (unchanged since the last look, or all at the end);
        returns whether any is still being written."""
        pending = False
        found = []
        for entry in os.scandir(folder):
            if entry.name in self._done or not entry.name.lower().endswith(".png") or not entry.is_file():
                continue
            st = entry.stat()
            found.append((st.st_mtime_ns, entry.name, (st.st_size, st.st_mtime_ns)))
        for _, name, mark in sorted(found):
            if not final and self._looked.get(name) != mark:
                self._looked[name] = mark  # just written, maybe not completely: the next look decides
                pending = True
                continue
            if self._stop.is_set() and not self._score_rest:
                return False
            event = self._score(folder / name, final)
            if event is NOT_YET:  # it does not decode yet: still being written
                pending = True
                continue
            self._done.add(name)
            if event is None:  # scoring is off
                return False
            self._send(event)
        return pending

    def _scorer(self) -> "SampleScorer":
        if self._scoring is None:
            ev = self.preset.evaluate
            training = instance_dir(self.preset, self.run)
            folders = [training] if training.is_dir() else photo_folders(self.run) or [training]
            self._scoring = SampleScorer(ev.embedder, ev.arcface_models, [str(f) for f in folders],
                                         str(validation_dir(self.preset, self.run)))
        return self._scoring

    def _score(self, path: Path, final: bool):
        """The sample's SampleLikeness; None when scoring is off; NOT_YET when it does not decode (yet)."""
        epoch, step = sample_when(path)
        epoch = self.epoch if epoch is None else epoch
        step = self.step if step is None else step
        answer = self._scorer().score(path, final)
        if answer.get("not_yet"):
            return NOT_YET
        if "off" in answer:
            self._scoring.close()
            self._scoring = False
            self._send(Warning(f"the samples are not scored for likeness: {answer['off']}"))
            return None
        return SampleLikeness(image=str(path), epoch=epoch, step=step, **answer)

    def _close(self) -> None:
        if self._scoring:
            self._scoring.close()


class SampleScorer:
    """The child process that scores samples (started with the first `score`; `close` ends it): every dlib call,
    the decoding and the references' embeddings happen there, never in the trainer's wrapper."""

    def __init__(self, embedder: str, arcface_models: Optional[str], training: list[str], held_out: str):
        self.spec = (embedder, arcface_models, tuple(training), held_out)
        self.pool: Optional[ProcessPoolExecutor] = None

    def score(self, path: Path, final: bool) -> dict:
        """`score_sample`'s answer; a child that died is a note on this sample (the next one starts a new child)."""
        try:
            if self.pool is None:
                self.pool = ProcessPoolExecutor(1, multiprocessing.get_context(CHILD_CONTEXT), initializer=child_started)
            return self.pool.submit(score_sample, self.spec, str(path), final).result()
        except Exception as e:  # noqa: BLE001 - a broken or failing child: this sample is not scored
            self.close()
            return {"note": f"sample {path.name} not scored: {type(e).__name__}: {e}"}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


# ---------------------------------------------------------------- in the child process
_LOADED: dict = {}  # spec → (embedder, references, held-out references) or the UserError text


def child_started() -> None:
    """The child's own priority: on a CPU-only machine the trainer comes first."""
    try:
        os.nice(NICE)
    except (AttributeError, OSError):
        pass


def references(spec):
    """(embedder, references, held-out references or None), loaded once per child; a str when scoring is off."""
    if spec not in _LOADED:
        from faceswap_kohya.faces.identity import get_embedder
        from faceswap_kohya.scoring.scores import load_references

        kind, models, training, held_folder = spec
        try:
            embedder = get_embedder(kind, models)
            refs = load_references([Path(f) for f in training], embedder)
            held = None
            if Path(held_folder).is_dir():
                try:
                    held = load_references(Path(held_folder), embedder)
                except UserError:  # no face in the held-out photos: the training photos alone
                    held = None
            _LOADED[spec] = (embedder, refs, held)
        except UserError as e:
            _LOADED[spec] = str(e)
        except Exception as e:  # noqa: BLE001 - a face model that fails to load
            _LOADED[spec] = f"{type(e).__name__}: {e}"
    return _LOADED[spec]


def score_sample(spec, path: str, final: bool) -> dict:
    """In the child: {"not_yet": True} (does not decode yet), {"off": why} (no face model or references), or the
    fields of the sample's SampleLikeness besides image, epoch and step."""
    from faceswap_kohya.files.images import load_rgb, unreadable_reason

    path = Path(path)
    try:
        image = load_rgb(path)
    except Exception as e:  # noqa: BLE001 - any decoder error: half written, or not an image
        if not final:
            return {"not_yet": True}
        image, unreadable = None, unreadable_reason(path, e)
    loaded = references(spec)
    if isinstance(loaded, str):
        return {"off": loaded}
    embedder, refs, held = loaded
    if image is None:
        return {"embedder": embedder.name, "note": f"sample {path.name} could not be read: {unreadable}"}
    try:
        return likeness(image, path, embedder, refs, held)
    except Exception as e:  # noqa: BLE001 - one sample that fails is a note, the next is scored
        return {"embedder": embedder.name, "note": f"sample {path.name} not scored: {type(e).__name__}: {e}"}


def likeness(image, path: Path, embedder, refs, held) -> dict:
    from faceswap_kohya.faces.detect import detect
    from faceswap_kohya.scoring.scores import score_embedding

    base = {"embedder": embedder.name}
    faces = detect(image, side=SAMPLE_SIDE)
    if not faces:
        return base | {"note": f"no face found in sample {path.name}"}
    embedding = embedder.embed(image, faces[0])
    if embedding is None:
        return base | {"faces": len(faces), "note": f"{embedder.missed} in sample {path.name}"}
    identity = score_embedding(embedding, refs)["score"]
    held_out = score_embedding(embedding, held)["score"] if held is not None else None
    return base | {"identity": identity, "held_out": held_out, "faces": len(faces)}


def watch(run, preset, emit: OnEvent) -> Optional[LiveLikeness]:
    """A started `LiveLikeness` when this training writes samples, else None."""
    return LiveLikeness(run, preset, emit).start() if wanted(preset) else None
