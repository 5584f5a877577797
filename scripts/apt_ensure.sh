# Sourced by the setup scripts: `apt_ensure WHO PACKAGE...` installs the Debian packages that
# are missing (and python3-venv when this Python cannot make a venv), with sudo when not root.
# Does nothing when everything is there, so every setup script stays safe to rerun.
apt_ensure() {
    local who=$1
    shift
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ! "${PYTHON:-python3}" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        missing+=(python3-venv python3-dev)
    fi
    if ((${#missing[@]})); then
        echo "$who: installing Debian packages: ${missing[*]}"
        local sudo=""
        if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
        export DEBIAN_FRONTEND=noninteractive
        # jackd2 asks about realtime priority in a debconf prompt; answer it up front.
        echo "jackd2 jackd/tweak_rt_limits boolean false" | $sudo debconf-set-selections 2>/dev/null || true
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}
