"""How the CLI shows a job's events: lines as they come, one live bar for steps or images."""

from __future__ import annotations

import sys

import click

from faceswap_kohya import events as ev


class Printer:
    """`printer(event)` renders one event; `close()` ends the bar. Messages go to stdout (or stderr with err=True)."""

    def __init__(self, err: bool = False, bar: bool = True):
        self.err, self.show_bar = err, bar
        self.bar = None
        self.epoch = ""
        self.val = None
        self.done = False

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
        elif isinstance(event, ev.CheckpointWritten):
            self._line(f"checkpoint: {event.path}")
        elif isinstance(event, ev.ModelSaved):
            self.done = True
            self.close()

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr if self.err else sys.stdout)
        else:
            click.echo(text, err=self.err)

    def _step(self, e: ev.Step) -> None:
        if not self.show_bar:
            return
        from tqdm import tqdm

        if self.bar is None or self.bar.total != e.total:
            self.close()
            self.bar = tqdm(total=e.total, unit=e.unit, dynamic_ncols=True, file=sys.stderr)
        self.bar.n = e.step
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
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()
        if e.unit == "image" and e.step >= e.total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
