"""The GPU check (benchmarks/gpu_check.py): its measurements and report, and `--dry-run` end to end on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KOHYA_PYTHON, SD_SCRIPTS, needs_kohya

from faceswap_kohya.config.presets import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import gpu_check as check  # noqa: E402
import gpu_check_report as report  # noqa: E402
import gpu_check_train as train  # noqa: E402

PRESETS = ("face-24gb", "face-12gb", "face-8gb")


def test_sec_per_it_counts_from_the_warmup_step_and_skips_redraws():
    seen = [(1, 10.0), (2, 14.0), (2, 14.5), (3, 15.0), (5, 17.0)]  # step 2 drawn twice, step 4 never
    assert train.sec_per_it(seen, warmup=2) == pytest.approx((17.0 - 14.0) / 3)
    assert train.sec_per_it(seen, warmup=5) is None  # one point is no rate
    assert train.sec_per_it([], warmup=1) is None


def test_budget_is_read_from_the_presets_vram_line():
    assert train.budget_gib("24 GB") == 24.0
    assert train.budget_gib("none (CPU)") is None


def test_summary_compares_both_ways_and_judges_the_budget():
    runs = [{"how": "wrapper", "status": "ok", "s_per_it": 1.02, "wall_s": 50.0, "smi_peak_mib": 11000.0},
            {"how": "by hand", "status": "ok", "s_per_it": 1.0, "wall_s": 49.0, "smi_peak_mib": 12800.0},
            {"how": "by hand", "status": "timeout", "s_per_it": 9.0}]  # a run cut off counts for memory only
    s = train.summarize({"budget_gib": 12.0, "runs": runs})
    assert s["ratio"] == pytest.approx(1.02)
    assert s["smi_peak_mib"] == 12800.0
    assert s["within_budget"] is False  # 12800 MiB > 12 GiB
    assert train.summarize({"budget_gib": 24.0, "runs": runs})["within_budget"] is True
    assert train.summarize({"budget_gib": 24.0, "runs": []})["within_budget"] is None


def test_peaks_are_the_largest_over_the_trainers_processes(tmp_path):
    (tmp_path / "1.json").write_text(json.dumps({"max_rss_mib": 900.0}))
    (tmp_path / "2.json").write_text(json.dumps({"max_rss_mib": 300.0, "cuda_max_allocated_mib": 7000.0}))
    (tmp_path / "3.json").write_text("{half a fi")
    assert train.read_peaks(tmp_path) == {"max_rss_mib": 900.0, "cuda_max_allocated_mib": 7000.0}


def test_the_hook_writes_the_peak_of_a_python_process(tmp_path):
    env = {"PYTHONPATH": str(PROJECT_ROOT / "benchmarks" / "gpu_check_hook"), "GPU_CHECK_PEAK_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", "x = bytearray(50 * 2**20)"], env=env, check=True)
    (peak,) = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert peak["max_rss_mib"] > 50


def test_report_of_a_partial_check_shows_what_was_measured_and_what_failed(tmp_path):
    results = {"mode": "gpu", "started": "now", "budget_s": 540, "elapsed_s": 100.0, "notes": [],
               "environment": {"gpu": "NVIDIA H200", "torch": "2.11"},
               "parts": {"setup": {"status": "ok", "seconds": 12.0, "limit_s": 90},
                         "generate": {"status": "timeout", "seconds": 170.0, "limit_s": 170, "error": "over its 170 s limit"}},
               "train": {"face-8gb": {"budget": "8 GB", "optimizer": "AdamW8bit", "resolution": 1024, "steps": 20,
                                      "summary": {"s_per_it_wrapper": 0.5, "s_per_it_by_hand": 0.49, "ratio": 1.02,
                                                  "smi_peak_mib": 7000.0, "within_budget": True}}},
               "generate": {"fp16": {"size": 1024, "steps": 30, "base_s": 2.0}, "bf16": {"error": "OOM"}}}
    report.write(results, tmp_path)
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| face-8gb | 8 GB | AdamW8bit | 1024, 20 | 0.500 | 0.490 | 1.020 |" in md
    assert "| fp16 | 1024, 30 | 2.00 | – |" in md and "| bf16 | failed: OOM |" in md
    assert "| generate | timeout | 170.0 | 170 | over its 170 s limit |" in md
    assert json.loads((tmp_path / "gpu_check.json").read_text())["train"]["face-8gb"]["summary"]["ratio"] == 1.02


def test_the_gpu_measures_every_preset_in_half_precision_and_the_dry_run_one_in_fp32():
    assert check.PRESETS == PRESETS
    assert check.GPU_PLAN.by_hand == ("face-24gb",) and check.GPU_PLAN.gen_dtypes == ("fp16",)
    assert check.DRY_PLAN.by_hand == ("face-12gb",) and check.DRY_PLAN.gen_dtypes == ("fp32",)
    assert check.GPU_PLAN.presets == PRESETS and check.DRY_PLAN.presets == ("face-12gb",)
    assert "training.mixed_precision='no'" in check.DRY_PLAN.overrides  # the trainer in fp32 on a CPU too
    assert check.GPU_PLAN.gen_warmup and not check.DRY_PLAN.gen_warmup  # a GPU compiles and tunes; a CPU doesn't


@pytest.mark.trainer
@needs_kohya
def test_dry_run_measures_every_preset_end_to_end(tmp_path):
    """The whole plan on the CPU at toy sizes: two real trainer runs (face-12gb by hand first, then through the
    wrapper), generation in fp32 and a swap (~3 min on an idle machine)."""
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "gpu-check.sh"), "--dry-run", str(out), "--",
                           "--sd-scripts", str(SD_SCRIPTS), "--trainer-python", str(KOHYA_PYTHON)],
                          capture_output=True, text=True, timeout=5400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_dry_run_output(out)


def check_dry_run_output(out: Path) -> None:
    """Every part ran; every preset of the plan has its wrapper run and figures, face-12gb its run by hand (first)
    and the ratio, and the presets the plan leaves out have no entry;
    generation (fp32 only: no half precision on a CPU) and swap have theirs; the table exists."""
    results = json.loads((out / "gpu_check.json").read_text())
    failed = {name: p for name, p in results["parts"].items() if p["status"] != "ok"}
    assert not failed, failed
    assert results["plan"]["by_hand"] == ["face-12gb"] and results["plan"]["gen_dtypes"] == ["fp32"]
    assert results["plan"]["presets"] == ["face-12gb"] and set(results["train"]) == {"face-12gb"}, results["train"]
    for name in results["plan"]["presets"]:
        entry = results["train"][name]
        hows = [r["how"] for r in entry["runs"]]
        assert hows == (["by hand", "wrapper"] if name == "face-12gb" else ["wrapper"]), (name, hows)
        s = entry["summary"]
        both = ("s_per_it_by_hand", "ratio", "wall_s_by_hand") if name == "face-12gb" else ()
        for key in ("s_per_it_wrapper", "wall_s_wrapper", "peak_rss_mib", *both):
            assert isinstance(s[key], float) and s[key] > 0, (name, key, s[key])
        if name != "face-12gb":
            assert s["s_per_it_by_hand"] is None and s["ratio"] is None, (name, s)
    assert set(results["generate"]) == {"fp32"}, results["generate"]
    g = results["generate"]["fp32"]
    assert all(g[k] > 0 for k in ("base_s", "unfused_s", "fused_s", "lora_load_s", "fuse_s")), g
    assert g["warmup"] is False, g
    assert results["swap"]["seconds"] > 0
    md = (out / "gpu_check.md").read_text()
    assert "| face-12gb |" in md and "| face-24gb |" not in md and "| fp32 | 64, 2 |" in md
