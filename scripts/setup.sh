#!/usr/bin/env bash
# Idempotent set-up: the sd-scripts submodule, the project's venv (.venv) and the trainer's venv
# (.venv-kohya, sd-scripts' pinned requirements, kept apart as kohya_ss does).
# Environment: PYTHON (default python3.11 or python3), PROJECT_TORCH (default torch==2.13.0, a CPU
# build), KOHYA_TORCH (default "torch==2.14.1 torchvision==0.29.1"), SKIP_KOHYA=1 to skip the trainer venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
PROJECT_TORCH=${PROJECT_TORCH:-torch==2.13.0}
KOHYA_TORCH=${KOHYA_TORCH:-torch==2.14.1 torchvision==0.29.1}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
# pip, quiet; drops the notices some pip configurations print for every package.
pipq() { "$@" -q 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

# 1. sd-scripts, pinned by the gitlink.
if [ ! -f vendor/sd-scripts/sdxl_train_network.py ]; then
  say "fetching vendor/sd-scripts"
  if ! git submodule update --init vendor/sd-scripts 2>/dev/null; then
    # Some mirrors lack sd-scripts' large Windows DLLs; check out everything else.
    rm -rf vendor/sd-scripts .git/modules/vendor/sd-scripts
    url=$(git config -f .gitmodules submodule.vendor/sd-scripts.url)
    pin=$(git ls-tree HEAD vendor/sd-scripts | awk '{print $3}')
    git clone -q --no-checkout "$url" vendor/sd-scripts
    git -C vendor/sd-scripts sparse-checkout set --no-cone '/*' '!/bitsandbytes_windows/' '!/configs/qwen3_06b/tokenizer.json'
    git -C vendor/sd-scripts checkout -q "$pin" 2>/dev/null || true
    [ -f vendor/sd-scripts/sdxl_train_network.py ] || { echo "could not check out vendor/sd-scripts" >&2; exit 1; }
  fi
fi

# 2. The project's venv.
if [ ! -x .venv/bin/python ]; then say "creating .venv"; "$PY" -m venv .venv; fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  say "installing $PROJECT_TORCH into .venv"; pipq .venv/bin/pip install $PROJECT_TORCH
fi
stamp=.venv/.installed-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  say "installing faceswap_kohya into .venv"
  pipq .venv/bin/pip install -e ".[faces,arcface,ui,sweep,service,dev]"
  # open_clip's BPE vocabulary file is all we need of it (offline CLIP tokenizers); its imports are not.
  pipq .venv/bin/pip install --no-deps open-clip-torch
  rm -f .venv/.installed-*; touch "$stamp"
fi

# 3. The trainer's venv.
if [ "${SKIP_KOHYA:-0}" != 1 ]; then
  if [ ! -x .venv-kohya/bin/python ]; then say "creating .venv-kohya"; "$PY" -m venv .venv-kohya; fi
  kstamp=.venv-kohya/.installed-$(sha1sum vendor/sd-scripts/requirements.txt | cut -c1-12)
  if [ ! -f "$kstamp" ]; then
    say "installing $KOHYA_TORCH into .venv-kohya (large; taken from local wheels when present)"
    pipq .venv-kohya/bin/pip install $KOHYA_TORCH
    say "installing sd-scripts requirements into .venv-kohya"
    grep -vE '^\s*-e\s' vendor/sd-scripts/requirements.txt > .venv-kohya/requirements.txt
    printf '%s\n' $KOHYA_TORCH > .venv-kohya/torch-pins.txt
    pipq .venv-kohya/bin/pip install -r .venv-kohya/requirements.txt -c .venv-kohya/torch-pins.txt
    rm -f .venv-kohya/.installed-*; touch "$kstamp"
  fi
fi
say "ready"
