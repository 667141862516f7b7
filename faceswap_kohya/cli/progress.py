"""How the CLI shows a job's events: lines as they come, one live bar for steps or images."""

from __future__ import annotations

import sys
import threading
import time

import click

from faceswap_kohya import events as ev

REDRAW_S = 0.25  # the bar is redrawn at most 4 times a second, however often the trainer redraws its own


class Printer:
    """`printer(event)` renders one event; `close()` ends the bar. Messages go to stdout (or stderr with err=True).

    A step that comes sooner than REDRAW_S after the last redraw only updates the bar's numbers; they are
    drawn when that time is up (a timer) or with the next redraw, so the bar never stays behind."""

    def __init__(self, err: bool = False, bar: bool = True):
        self.err, self.show_bar = err, bar
        self.bar = None
        self.epoch = ""
        self.val = None
        self.done = False
        self._lock = threading.RLock()  # the late redraw runs in a timer's thread
        self._drawn = 0.0
        self._late: threading.Timer | None = None

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Message):
            self._line(event.text)
        elif isinstance(event, ev.Warning):
            self._line(click.style(f"warning: {event.text}", fg="yellow"))
        elif isinstance(event, ev.EvaluationFailed):
            self._line(click.style(event.text, fg="yellow"))
        elif isinstance(event, ev.Step) and not self.done:
            self._step(event)
        elif isinstance(event, ev.Epoch):
            self.epoch = f"{event.epoch}/{event.total}"
        elif isinstance(event, ev.ValidationLoss):
            self.val = event.loss
            when = f"epoch {event.epoch}" if event.epoch is not None else f"step {event.step}"
            self._line(f"validation loss on the held-out photos ({when}): {event.loss:.4f}")
        elif isinstance(event, ev.SampleLikeness):
            self._line(event.text if event.identity is not None else click.style(event.text, fg="yellow"))
        elif isinstance(event, ev.CheckpointWritten):
            self._line(f"checkpoint: {event.path}")
        elif isinstance(event, ev.ModelSaved):
            self.done = True
            self.close()

    def _line(self, text: str) -> None:
        with self._lock:
            if self.bar is not None:
                self.bar.write(text, file=sys.stderr if self.err else sys.stdout)
                return
        click.echo(text, err=self.err)

    def _step(self, e: ev.Step) -> None:
        if not self.show_bar:
            return
        from tqdm import tqdm

        if self.bar is None or self.bar.total != e.total:
            self.close()
            self.bar = tqdm(total=e.total, unit=e.unit, dynamic_ncols=True, file=sys.stderr)
            self._drawn = 0.0
        post = {}
        if self.epoch:
            post["epoch"] = self.epoch
        if e.loss is not None:
            post["loss"] = f"{e.loss:.4f}"
        if self.val is not None:
            post["val"] = f"{self.val:.4f}"
        if e.lr is not None:
            post["lr"] = f"{e.lr:.2e}"
        if e.sec_per_it is not None:
            post[f"s/{e.unit}"] = f"{e.sec_per_it:.1f}"
        if e.eta:
            post["eta"] = e.eta
        with self._lock:
            self.bar.n = e.step
            self.bar.set_postfix(post, refresh=False)
            wait = self._drawn + REDRAW_S - time.monotonic()
            if wait <= 0 or e.step >= e.total:
                self._redraw()
            elif self._late is None:
                self._late = threading.Timer(wait, self._redraw)
                self._late.daemon = True
                self._late.start()
        if e.unit == "image" and e.step >= e.total:
            self.close()

    def _redraw(self) -> None:
        with self._lock:
            if self._late is not None and self._late is not threading.current_thread():
                self._late.cancel()
            self._late = None
            if self.bar is not None:
                self.bar.refresh()
                self._drawn = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if self._late is not None:
                self._late.cancel()
                self._late = None
            if self.bar is not None:
                self.bar.close()
                self.bar = None
