#!/usr/bin/env bash
# Installs everything tympan needs on a Debian machine: apt packages, a virtualenv in .venv,
# and tympan itself in editable mode with its test extras. Safe to rerun: each step checks
# first and does nothing when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages. espeak-ng: one of the corpus voices (scripts/build_corpus.py) and the
# reference agent's light TTS. jackd2: the virtual loopback rig. libportaudio2: sound cards
# (python-sounddevice), tested through PortAudio's JACK host API.
# ser2net: serves a serial port over RFC 2217 (remote rigs; the bridge's integration test).
# gcc, make: the C firmware library's host unit tests and the C device (device/firmware).
# chromium: renders report.html headless in the report tests (a person's view of it).
APT_PACKAGES=(espeak-ng jackd2 libportaudio2 git ser2net gcc make chromium)
PYTHON=${PYTHON:-python3}

source scripts/apt_ensure.sh
apt_ensure setup "${APT_PACKAGES[@]}"

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: tympan needs Python >= 3.11, found {sys.version.split()[0]} ({sys.executable})")
PY

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi

# Reinstall only when pyproject.toml changed since the last successful install.
stamp=.venv/.tympan-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing tympan (editable, with test extras) into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    echo "$want" > "$stamp"
fi
# silero-vad ships the VAD's ONNX model, but its wheel depends on torch: install it without
# dependencies (the agent runs the model with onnxruntime and never imports the package).
if ! .venv/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("silero_vad") is None)'; then
    echo "setup: installing silero-vad (model only, --no-deps)"
    .venv/bin/python -m pip install -q --no-deps 'silero-vad>=5,<7'
fi
# Allure 3 (the npm package `allure`) renders the single-file HTML report; installed into
# .node/ so runs are offline. Without node/npm tympan writes its own report.html only.
if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
    if [ ! -f .node/node_modules/allure/cli.js ]; then
        echo "setup: installing Allure 3 (npm allure) into .node/"
        mkdir -p .node
        npm install --prefix .node --no-audit --no-fund --loglevel=error 'allure@^3.18' ||
            echo "setup: npm install allure failed; reports use tympan's own report.html"
    fi
else
    echo "setup: node/npm not found: skipping Allure 3; reports use tympan's own report.html"
fi
# The frameworks' example agents (examples/pipecat_bot, examples/livekit_agent), each in a
# virtualenv of its own (.venv-pipecat, .venv-livekit: their dependencies are theirs, not
# tympan's); each script is as safe to rerun as this one. TYMPAN_SKIP_FRAMEWORKS=1 skips them:
# pytest then skips the framework tests, saying why; `make test` requires them (it fails).
if [ "${TYMPAN_SKIP_FRAMEWORKS:-0}" != "1" ]; then
    bash scripts/setup_pipecat.sh
    bash scripts/setup_livekit.sh
fi
echo "setup: ready (.venv/bin/tympan)"
