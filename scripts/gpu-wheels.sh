#!/usr/bin/env bash
# Everything the GPU check needs that the GPU machine lacks, in one ignored folder that travels with the
# working tree. That machine: Python 3.12 on x86-64 with torch (CUDA 13.0), transformers 5, accelerate,
# peft, safetensors, opencv, but no diffusers, no bitsandbytes and no network.
#
#   DIR/trainer/*.whl     sd-scripts' pins that the machine lacks or has at clashing versions
#   DIR/generate/*.whl    this package's generation needs (current diffusers, compel, pydantic, ...)
#   DIR/sd-scripts.tar.gz sd-scripts' files (no .git), so vendor/sd-scripts need not travel
#
# The two wheel sets are installed apart there (pip install --no-index --no-deps --target): the trainer's
# transformers 4.x / huggingface-hub 0.x must not meet the generation side's diffusers 0.4x.
# bitsandbytes is kept with its CUDA ${BNB_CUDA} library only (the full wheel is 43 MB; its other builds are
# for other CUDA versions and ROCm), and dropped, with a note, if the total would not fit.
#
# Usage: scripts/gpu-wheels.sh [DIR]          (default .gpu-wheels)
# Env: SD_SCRIPTS (default FACESWAP_KOHYA_SD_SCRIPTS, else vendor/sd-scripts), PYTHON (runs pip), BNB_CUDA (default 130), BUDGET_MIB (64)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.gpu-wheels}
SD_SCRIPTS=${SD_SCRIPTS:-${FACESWAP_KOHYA_SD_SCRIPTS:-vendor/sd-scripts}}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}
BNB_CUDA=${BNB_CUDA:-130}
BUDGET=$(( ${BUDGET_MIB:-64} * 1024 * 1024 ))
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform any)
say() { printf '\033[1m[gpu-wheels]\033[0m %s\n' "$*"; }
die() { printf 'gpu-wheels: %s\n' "$*" >&2; exit 1; }
# pip, quiet; drops the notices some pip configurations print for every package.
pipq() { "$PY" -m pip "$@" -q --disable-pip-version-check 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
download() { local dest=$1; shift; mkdir -p "$dest"; pipq download --no-deps "${TARGET[@]}" -d "$dest" "$@"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
size_of() { du -sb "$@" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }

REQS=$SD_SCRIPTS/requirements.txt
[ -f "$REQS" ] && [ -f "$SD_SCRIPTS/sdxl_train_network.py" ] \
  || die "$SD_SCRIPTS has no sd-scripts checkout: run scripts/setup.sh, or set SD_SCRIPTS to one"
# NAME==VERSION as sd-scripts' requirements.txt pins it (extras dropped).
pin() { local line; line=$(grep -iE "^$1(\[[^]]*\])?==" "$REQS" | head -1 | sed -E 's/\[[^]]*\]//; s/[[:space:]]*(#.*)?$//')
        [ -n "$line" ] || die "$REQS pins no $1"; echo "$line"; }
# NAME==VERSION as the project's .venv has it, else NAME alone (the newest).
ours() { local v; v=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null) \
         && echo "$1==$v" || echo "$1"; }

# all of DIR travels: anything else in it would count against the budget (checked before anything is removed)
mkdir -p "$DIR"
others=$(ls -A "$DIR" | grep -vxE 'trainer|generate|sd-scripts\.tar\.gz|MANIFEST\.txt' | head -5 | tr '\n' ' ' || true)
[ -z "$others" ] || die "$DIR holds files this script did not make ($others...): give a new or empty folder"
rm -rf "$DIR/trainer" "$DIR/generate" "$DIR/sd-scripts.tar.gz" "$DIR/MANIFEST.txt"

say "trainer set (sd-scripts' pins) → $DIR/trainer"
trainer=()
for name in transformers diffusers huggingface-hub accelerate safetensors voluptuous toml imagesize ftfy; do
  trainer+=("$(pin "$name")")
done
download "$DIR/trainer" "${trainer[@]}" wcwidth
# tokenizers: the range that the pinned transformers asks for (sd-scripts does not pin it).
tok=$(unzip -p "$DIR"/trainer/transformers-*.whl '*.dist-info/METADATA' | sed -nE '/extra ==/!s/^Requires-Dist: (tokenizers[^;]*).*/\1/p' | head -1 | tr -d ' ')
download "$DIR/trainer" "${tok:-tokenizers}"

say "generation set (this package's needs) → $DIR/generate"
download "$DIR/generate" "$(ours diffusers)" "$(ours compel)" "$(ours pydantic)" "$(ours pydantic_core)" \
  "$(ours annotated-types)" "$(ours typing-inspection)" "$(ours typing_extensions)" "$(ours tomli_w)" \
  "$(ours imagehash)" "$(ours open_clip_torch)"  # open_clip: only its BPE vocabulary file (offline CLIP tokenizers)

say "sd-scripts files → $DIR/sd-scripts.tar.gz"
tar -czf "$DIR/sd-scripts.tar.gz" --exclude=.git --exclude=__pycache__ -C "$(dirname "$SD_SCRIPTS")" "$(basename "$SD_SCRIPTS")"

# What travels: tracked and untracked-not-ignored files (a submodule's folder is not copied) + DIR.
tree_bytes() { git ls-files -co --exclude-standard -z | xargs -0 -r stat -L -c '%s %F' 2>/dev/null \
               | awk '$2 == "regular" { s += $1 } END { print s + 0 }'; }
TREE=$(tree_bytes)

say "bitsandbytes with its CUDA $BNB_CUDA library only"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
download "$tmp" bitsandbytes
"$PY" - "$tmp"/bitsandbytes-*.whl "$DIR/trainer" "$BNB_CUDA" <<'EOF'
"""Copy a bitsandbytes wheel keeping one CUDA library (and the CPU one); RECORD is rewritten to match.
The copy carries build tag 1cuda<N> in its name, so it is never mistaken for the published wheel."""
import re, sys, zipfile
from pathlib import Path

src, dest, cuda = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
keep_lib = re.compile(rf"libbitsandbytes_(cpu|cuda{cuda})\.so$")
name, version, *tags = src.stem.split("-")
out = dest / f"{name}-{version}-1cuda{cuda}-{'-'.join(tags[-3:])}.whl"
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
    names = [n for n in zin.namelist() if not re.search(r"libbitsandbytes_\w+\.so$", n) or keep_lib.search(n)]
    if not any(keep_lib.search(n) and "cuda" in n for n in names):
        sys.exit(f"{src.name} has no libbitsandbytes_cuda{cuda}.so")
    for n in names:
        data = zin.read(n)
        if n.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines()
            data = ("\n".join(l for l in lines if l.split(",")[0] in names) + "\n").encode()
        zout.writestr(zin.getinfo(n), data)
print(f"{out.name}: {out.stat().st_size / 2**20:.1f} MiB (the published wheel: {src.stat().st_size / 2**20:.1f} MiB)")
EOF
if (( TREE + $(size_of "$DIR") > BUDGET )); then
  rm -f "$DIR"/trainer/bitsandbytes-*.whl
  say "NOTE: bitsandbytes dropped (over the budget): the check trains with AdamW instead of AdamW8bit"
fi

say "checking that each set installs on Python 3.12 / x86-64 (one version of each package)"
for set in trainer generate; do
  pipq install --root-user-action=ignore --no-index --no-deps "${TARGET[@]}" --target "$tmp/$set" "$DIR/$set"/*.whl \
    || die "the $set set does not install"
done

TOTAL=$(( TREE + $(size_of "$DIR") ))
{
  echo "# made by scripts/gpu-wheels.sh; sd-scripts $(git -C "$SD_SCRIPTS" rev-parse --short HEAD 2>/dev/null || echo '?')"
  for f in "$DIR"/trainer/*.whl "$DIR"/generate/*.whl "$DIR/sd-scripts.tar.gz"; do
    printf '%9d  %s\n' "$(size_of "$f")" "${f#"$DIR"/}"
  done
  echo "travels: tree $TREE + $DIR $(( TOTAL - TREE )) = $TOTAL bytes (budget $BUDGET)"
} > "$DIR/MANIFEST.txt"
say "trainer $(mib "$(size_of "$DIR/trainer")"), generate $(mib "$(size_of "$DIR/generate")"), sd-scripts $(mib "$(size_of "$DIR/sd-scripts.tar.gz")")"
say "what travels (tree + $DIR): $(mib "$TREE") + $(mib $(( TOTAL - TREE ))) = $(mib "$TOTAL") of $(mib "$BUDGET")"
(( TOTAL <= BUDGET )) || die "over the budget by $(mib $(( TOTAL - BUDGET ))): drop wheels or ignore large files in the tree"
say "ready: carry $DIR"
