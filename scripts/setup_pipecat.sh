#!/usr/bin/env bash
# Installs the Pipecat example bot (examples/pipecat_bot) into its own virtualenv,
# .venv-pipecat, apart from tympan's .venv: Pipecat pins its own versions of numpy,
# onnxruntime and friends, and a framework under test should not share the harness's
# environment. Safe to rerun: each step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages. portaudio19-dev: PyAudio has no manylinux wheel and builds against it;
# libportaudio2 (Debian's, linked with libjack): the JACK host API the bot talks through;
# jackd2: the server tympan's loopback rig starts, and jack_lsp to look at the bot's ports.
APT_PACKAGES=(portaudio19-dev libportaudio2 jackd2 gcc)
PYTHON=${PYTHON:-python3}
VENV=.venv-pipecat
REQ=examples/pipecat_bot/requirements.txt
NICE=(nice -n 10) # two cores shared with other work: builds and installs run niced

source scripts/apt_ensure.sh
apt_ensure setup_pipecat "${APT_PACKAGES[@]}"

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"setup_pipecat: pipecat-ai needs Python >= 3.10, found {sys.version.split()[0]}")
PY

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup_pipecat: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when the requirements changed since the last successful install.
stamp=$VENV/.pipecat-installed
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup_pipecat: installing $REQ into $VENV (pip caches the wheels; PyAudio builds once)"
    "${NICE[@]}" "$VENV/bin/python" -m pip install -q --upgrade pip
    "${NICE[@]}" "$VENV/bin/python" -m pip install -q -r "$REQ"
    echo "$want" > "$stamp"
fi
echo "setup_pipecat: ready ($VENV/bin/python examples/pipecat_bot/bot.py)"
