"""One function per user job, shared by the CLI, the web app and sweeps.

Each takes typed inputs (a Preset or plain values) and reports through `on_event` (faceswap_kohya.events);
none prints. Heavy libraries (torch, diffusers) load inside the job that needs them.

| job | function |
|---|---|
| prepare | `jobs.prepare.prepare` |
| captions (edit a prepared run's) | `jobs.captions.captions`, `jobs.captions.save_captions` |
| render (dry run) | `jobs.render.render` |
| regularize | `jobs.regularize.regularize` |
| train, resume | `jobs.train.train`, `jobs.train.resume` |
| generate, compare | `jobs.generate.run_generate`, `jobs.compare.run_compare` |
| evaluate | `jobs.evaluate.evaluate` (`plan_run`/`plan_lora` make its plan) |
| swap | `jobs.swap.run_swap` |
| identity | `jobs.identity.identity` |
| Kohya import/export | `jobs.kohya_presets.import_kohya`, `jobs.kohya_presets.export_kohya` |
| sweep, batch | `jobs.sweep.sweep`, `jobs.batch.batch` (on Ray; `faceswap_kohya.sweeps`) |
| sweep status, stop | `jobs.sweeps_status.sweep_status`, `jobs.sweeps_status.stop_sweep` |
"""
