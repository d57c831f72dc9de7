#!/usr/bin/env bash
# Set up what `make demo` or `make test` needs, idempotently.
#   demo: a virtualenv with mie (no hardware stack, no daemon).
#   test: Debian packages for the real PC/SC stack (pcscd, vsmartcard-vpcd, OpenSC, pcsc-lite
#         headers and swig for pyscard builds), SoftHSM2 (PKCS#11 keys) and PostgreSQL (shared
#         state), installed with apt-get when run as root, and a virtualenv with
#         mie[pcsc,nfc,fido,hsm,store,relay,service,dev] pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

say() { echo "setup: $*" >&2; }

apt_install() {
  if [[ $(id -u) -ne 0 ]]; then
    say "missing Debian packages: $* (run as root, or: sudo apt-get install $*)"
    return 0
  fi
  say "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_python() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "mie needs Python >= 3.11 ($PYTHON is $("$PYTHON" --version 2>&1))"
    exit 2
  fi
  if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
  fi
}

system_packages() {
  local missing=()
  command -v pcscd >/dev/null || missing+=(pcscd)
  [[ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ]] || missing+=(vsmartcard-vpcd)
  command -v opensc-tool >/dev/null || missing+=(opensc)
  [[ -e /usr/include/PCSC/winscard.h ]] || missing+=(libpcsclite-dev)
  command -v swig >/dev/null || missing+=(swig)
  [[ -e /usr/lib/softhsm/libsofthsm2.so ]] || missing+=(softhsm2)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  if ((${#missing[@]})); then
    apt_install "${missing[@]}"
  fi
}

virtualenv() {
  local extras=$1 stamp="$VENV/.mie-${1:-base}"
  if [[ -f $stamp && $stamp -nt pyproject.toml && $stamp -nt constraints.txt ]]; then
    return 0
  fi
  [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".${extras:+[$extras]}"
  touch "$stamp"
}

need_python
case $mode in
  demo) virtualenv "" ;;
  test) system_packages; virtualenv "pcsc,nfc,fido,hsm,store,relay,service,dev" ;;
  *) say "usage: scripts/setup.sh demo|test"; exit 2 ;;
esac
