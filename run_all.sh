#!/usr/bin/env bash
# LAIONet companion: bootstrap the environment, then run the numbered notebooks headless.
#
#   ./run_all.sh                          every notebook of the demo profile (the default)
#   ./run_all.sh --profile tiny           another profile (profiles/<name>.yaml or a path)
#   ./run_all.sh --only 01,02             a subset of the notebooks, in order
#   ./run_all.sh -p threshold 0.80        override a parameter (repeatable)
#   ./run_all.sh sweep 02 threshold 0.70 0.75 0.82
#                                         one notebook, one parameter, several values
#   ./run_all.sh list [--profile full]    every notebook's parameters and their values
#   ./run_all.sh test [pytest args]       run the test suite
#   ./run_all.sh env                      only create / check the environment
# One run or sweep of a profile at a time: a second waits for the first (--no-wait: exit 3).
#
# Environment selection, first match wins:
#   1. $LAIONET_PYTHON (an interpreter that already has everything);
#   2. the active virtualenv / conda env when it can import everything the project needs;
#   3. the venv at ${LAIONET_VENV:-.venv}, created and filled from requirements.lock if needed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
LOCK="$ROOT/requirements.lock"
LOCK_NODEPS="$ROOT/requirements-nodeps.lock"
VENV="${LAIONET_VENV:-$ROOT/.venv}"

# Offline by default: nothing is fetched from model hubs unless the user asks for it.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export NO_ALBUMENTATIONS_UPDATE=1
export WANDB_MODE="${WANDB_MODE:-disabled}"
export MPLBACKEND=Agg
export PYTHONUNBUFFERED=1
export LAIONET_ROOT="$ROOT"

lock_hash() {
    cat "$LOCK" "$LOCK_NODEPS" | sha256sum | cut -c1-16
}

env_ok() {  # $1 = python; succeeds when it can import everything pinned
    "$1" - <<'PY' >/dev/null 2>&1
import importlib, sys
for m in ("torch", "torchvision", "timm", "open_clip", "sentence_transformers", "papermill",
          "jupytext", "nltk", "pandas", "pyarrow", "seaborn", "img2dataset", "pytest", "xdist", "yaml"):
    importlib.import_module(m)
PY
}

ensure_editable() {  # make `import laionet` resolve to this checkout
    local py="$1" where
    where="$("$py" -c 'import laionet, os; print(os.path.realpath(os.path.dirname(laionet.__file__)))' 2>/dev/null || true)"
    if [ "$where" != "$(realpath "$ROOT/lib/laionet")" ]; then
        echo "[run_all] installing the laionet package from $ROOT (editable)"
        "$py" -m pip install --quiet --no-deps --no-build-isolation -e "$ROOT"
    fi
}

create_venv() {
    local base
    base="$(command -v python3.11 || command -v python3)"
    echo "[run_all] creating the environment in $VENV (python: $base); this takes a few minutes once"
    rm -rf "$VENV"
    "$base" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
    # requirements.lock pins every package (torch 2.14.1 + torchvision 0.29.1, a working CPU pair).
    "$VENV/bin/python" -m pip install --quiet -r "$LOCK"
    "$VENV/bin/python" -m pip install --quiet --no-deps -r "$LOCK_NODEPS"
    # The stamp is written last: an interrupted install is redone on the next run.
    lock_hash >"$VENV/.laionet-lock-hash"
}

apt_install() {  # $1 = what needs it, then Debian packages; says what it does before doing it
    local why="$1"; shift
    if [ "${LAIONET_NO_APT:-0}" = 1 ]; then
        echo "[run_all] $why needs the Debian package(s) $*; LAIONET_NO_APT=1, so not installing them"
        return 1
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "[run_all] $why needs the Debian package(s) $*: install them (sudo apt-get install $*)"
        return 1
    fi
    echo "[run_all] $why needs the Debian package(s) $*: installing them with apt-get" \
         "(set LAIONET_NO_APT=1 to skip)"
    apt-get install -y -qq "$@" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$@" >/dev/null 2>&1; } \
        || { echo "[run_all] could not install $*"; return 1; }
}

ensure_wordnet() {
    # WordNet 3.0 (Debian's wordnet-base) backs the "unique in WordNet" lemma rule and
    # synset lists beyond ImageNet-1k. Without it those features explain how to get it.
    [ -f /usr/share/wordnet/data.noun ] && return 0
    [ -n "${LAIONET_WORDNET:-}" ] && return 0
    apt_install "WordNet 3.0 (the synset texts and the unique-lemma rule)" wordnet-base || true
}

pick_python() {
    ensure_wordnet
    if [ -n "${LAIONET_PYTHON:-}" ]; then
        PY="$LAIONET_PYTHON"
    elif [ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] && [ "$(command -v python || true)" != "$VENV/bin/python" ] \
            && env_ok "$(command -v python)"; then
        PY="$(command -v python)"
        echo "[run_all] using the active environment: $PY"
    else
        if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.laionet-lock-hash" 2>/dev/null)" != "$(lock_hash)" ]; then
            create_venv
        elif ! env_ok "$VENV/bin/python"; then  # same lock, an import fails: repair in place
            echo "[run_all] $VENV cannot import every pinned package; reinstalling from the lock"
            "$VENV/bin/python" -m pip install --quiet -r "$LOCK" \
                && "$VENV/bin/python" -m pip install --quiet --no-deps -r "$LOCK_NODEPS" \
                && env_ok "$VENV/bin/python" || create_venv
        fi
        PY="$VENV/bin/python"
        ensure_jupyter "$PY" "$VENV"
    fi
    ensure_editable "$PY"
}

ensure_jupyter() {  # $1 = a python, $2 = its environment: JupyterLab opens .py notebooks as notebooks
    # Two files inside the environment only (nothing in $HOME), written by the tools themselves
    # when missing (idempotent): Jupytext's default viewer for .py files and the kernel the
    # notebooks name, python3, as "Python 3 (LAIONet)". README "Working in JupyterLab": check, undo.
    local settings="$2/etc/jupyter/labconfig/default_setting_overrides.json"
    grep -qs '"python": "Jupytext Notebook"' "$settings" \
        || "$1" -m jupytext_config --settings-file "$settings" set-default-viewer python \
        || echo "[run_all] could not set Jupytext's default viewer in $settings"
    grep -qs '"Python 3 (LAIONet)"' "$2/share/jupyter/kernels/python3/kernel.json" \
        || "$1" -m ipykernel install --prefix "$2" --name python3 --display-name "Python 3 (LAIONet)" >/dev/null \
        || echo "[run_all] could not install the kernel spec python3 in $2"
}

ensure_chromium() {  # the real-browser test (tests/test_browser.py) drives Debian's chromium
    command -v chromium >/dev/null 2>&1 && return 0
    apt_install "the real-browser test (tests/test_browser.py; it skips without it)" chromium || true
}

cmd="${1:-run}"
case "$cmd" in
    test)
        shift
        pick_python
        ensure_chromium
        # one worker per core (pytest-xdist); "-n 0" after the command runs everything in this process
        exec "$PY" -m pytest -n logical --dist loadgroup --durations=25 "$@"
        ;;
    env)
        pick_python
        echo "[run_all] environment ready: $PY"
        ;;
    sweep|list)
        shift
        pick_python
        exec "$PY" -m laionet.pipeline.runner "$cmd" "$@"
        ;;
    -h|--help|help)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        [ "$cmd" = "run" ] && [ $# -gt 0 ] && shift
        pick_python
        exec "$PY" -m laionet.pipeline.runner run "$@"
        ;;
esac
