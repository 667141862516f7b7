"""The training service for apps (`faceswap-kohya serve`): a REST API over the same jobs and run folders as the CLI and
the web app, with a durable job store, API keys, signed webhooks and a first-in first-out queue run on Ray."""
