"""The web app: one page per step of the work (Photos, Train, Results, Evaluate, Swap), the Runs list and Sweeps.

It calls the same jobs as the CLI and nothing else; training runs as `faceswap-kohya train` in its own process.
Safety: loopback only unless a login is set; no share link, no analytics, fonts from this machine; files are
served only from the workspace (run folders and uploads), and URLs are never fetched through the file route.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from faceswap_kohya.config.hosts import is_loopback
from faceswap_kohya.errors import UserError
from faceswap_kohya.web import evaluate, photos, results, runs, swap, sweeps, train
from faceswap_kohya.web.common import Workspace, check_output_dir
from faceswap_kohya.web.pages import Shared, refreshed_runs

LOCAL_FONTS = ["DejaVu Sans", "ui-sans-serif", "system-ui", "sans-serif"]
LOCAL_MONO = ["DejaVu Sans Mono", "ui-monospace", "monospace"]


def parse_auth(host: str, auth: Optional[str]) -> Optional[tuple[str, str]]:
    """(user, password) from `USER:PASSWORD`; a non-loopback host without one is refused, saying why."""
    if auth:
        user, sep, password = auth.partition(":")
        if not sep or not user or not password:
            raise UserError("--auth: expected USER:PASSWORD (both non-empty)")
        return user, password
    if not is_loopback(host):
        raise UserError(f"--host {host} makes the app reachable from other machines: give --auth USER:PASSWORD "
                        "(or set FACESWAP_KOHYA_UI_AUTH) to require a login, or keep the default 127.0.0.1")
    return None


def quiet_environment(ws: Workspace) -> None:
    """Before gradio is imported: no analytics or update checks, its scratch files inside the workspace."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["GRADIO_TEMP_DIR"] = str(ws.scratch / "gradio")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(ws.scratch / "gradio" / "examples")
    os.environ.setdefault("GRADIO_MCP_SERVER", "False")


class NoRemoteFiles:
    """ASGI middleware: the file route serves local files only (gradio would otherwise fetch `file=http://...`)."""

    REMOTE = re.compile(r"/file=[A-Za-z][A-Za-z0-9+.-]*:")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http" and self.REMOTE.search(scope.get("path", "")):
            from starlette.responses import PlainTextResponse

            await PlainTextResponse("File not allowed.", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def patient_url_check(url: str, wait: float = 90.0) -> bool:
    """Gradio's start-up check that the local page answers, with patience for a busy machine (its own gives up
    after one 3 s timeout) and without proxies from the environment."""
    import time

    import httpx

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if httpx.head(url, timeout=10, verify=False, trust_env=False).status_code in (200, 401, 301, 302, 303, 307, 308):
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def build(ws: Workspace):
    """The gr.Blocks of the whole app."""
    import gradio as gr


    # delete_cache: gradio's copies of served files (all re-made on demand) older than a day, checked hourly
    with gr.Blocks(title="faceswap-kohya", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown("# faceswap-kohya\nPhotos of one person → an SDXL or FLUX.1 identity LoRA (Kohya's sd-scripts) → new "
                    "pictures, an identity report and face swaps. Everything runs on this machine.")
        shared = Shared(ws=ws, prepared=gr.State(""), photos_dir=gr.State(""), followed=gr.State(""))
        with gr.Tabs(elem_id="pages") as shared.tabs:
            with gr.Tab("1 · Photos", id="photos", elem_id="tab-photos"):
                photos_page = photos.build(shared)
            with gr.Tab("2 · Train", id="train", elem_id="tab-train"):
                train_page = train.build(shared)
            with gr.Tab("3 · Results", id="results", elem_id="tab-results") as results_tab:
                results_page = results.build(shared)
            with gr.Tab("4 · Evaluate", id="evaluate", elem_id="tab-evaluate") as evaluate_tab:
                evaluate_page = evaluate.build(shared)
            with gr.Tab("5 · Swap", id="swap", elem_id="tab-swap") as swap_tab:
                swap_page = swap.build(shared)
            with gr.Tab("Runs", id="runs", elem_id="tab-runs") as runs_tab:
                runs_page = runs.build(shared)
            with gr.Tab("Sweeps", id="sweeps", elem_id="tab-sweeps") as sweeps_tab:
                sweeps_page = sweeps.build(shared)
        photos.wire(photos_page, train_page, shared)
        train.wire(train_page, shared)
        for tab, page in ((results_tab, results_page), (evaluate_tab, evaluate_page), (swap_tab, swap_page)):
            event = tab.select(lambda current: refreshed_runs(ws, current), [page.run], [page.run], show_progress="hidden")
            if page is not swap_page:  # the run's newest evaluation, or its newest before/after grids
                event.then(page.show, getattr(page, "show_inputs", None) or [page.run], page.view, show_progress="hidden")
        runs_tab.select(runs.tab_refresh(ws), [runs_page.choice], runs_page.outputs, show_progress="hidden")
        runs.wire(runs_page, shared, photos_page, train_page)
        sweeps.wire(sweeps_page, shared)
        sweeps_tab.select(sweeps.tab_select(ws), [sweeps_page.choice], [sweeps_page.choice], show_progress="hidden").then(
            lambda v: sweeps.view(v, ws), [sweeps_page.choice], sweeps_page.outputs, show_progress="hidden")
        demo.load(lambda: train.reattach(ws), None, [shared.followed], show_progress="hidden")
        demo.load(train_page.run_check, train_page.check_inputs, [train_page.check], show_progress="hidden")
    return demo


def serve(output: Path, host: str = "127.0.0.1", port: int = 7860, auth: Optional[str] = None,
          open_browser: bool = False, block: bool = True, keep_model: bool = True):
    """Check the safety settings first (UserError before anything starts), then start the server. keep_model: the
    base model stays loaded between the picture jobs (diffusion.pipeline.keep_between_jobs) until a training starts."""
    login = parse_auth(host, auth)
    ws = Workspace(check_output_dir(output)).make()
    quiet_environment(ws)
    from faceswap_kohya.diffusion.pipeline import keep_between_jobs

    keep_between_jobs(keep_model)
    import gradio as gr
    from gradio import networking
    from starlette.middleware import Middleware

    networking.url_ok = patient_url_check
    demo = build(ws)
    theme = gr.themes.Default(font=LOCAL_FONTS, font_mono=LOCAL_MONO)
    demo.queue(default_concurrency_limit=4)
    return demo.launch(server_name=host, server_port=port, share=False, auth=login, inbrowser=open_browser,
                       allowed_paths=[str(ws.output)], prevent_thread_lock=not block, show_error=True, ssr_mode=False,
                       mcp_server=False, enable_monitoring=False, footer_links=[], theme=theme, quiet=False,
                       app_kwargs={"middleware": [Middleware(NoRemoteFiles)]})
