"""`faceswap-kohya ui`: a local web app over the jobs (needs the `ui` extra: gradio). Importing this package does not
import gradio; `web.app.serve` does."""
