#!/usr/bin/env bash
# Installs everything talkover needs on a fresh Debian 12 machine with Python >= 3.11:
# the Debian packages (SIPp, baresip, tcpdump, ...) and a virtual environment in .venv.
#   deploy/install.sh          runtime only
#   deploy/install.sh --test   also the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_pkgs=(sox kamailio)  # kamailio: the SIP front door of a pool of gateway workers
[ $want_test = 1 ] && apt_pkgs+=(sip-tester baresip tcpdump espeak-ng)
[ $want_test = 1 ] && apt_pkgs+=(chromium chromium-driver)  # the WebRTC softphone test's browser
[ $want_test = 1 ] && apt_pkgs+=(systemd)  # systemd-analyze verify on deploy/systemd units
[ $want_test = 1 ] && apt_pkgs+=(iproute2)  # ip netns: network namespaces stand in for hosts (tests/test_multihost.py)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Installing Debian's kamailio starts its sample Kamailio on port 5060 under systemd; talkover
# runs Kamailio itself (deploy/kamailio/) and needs that port. Only undo what this run started.
if [[ " ${missing[*]} " == *" kamailio "* ]] && [ -d /run/systemd/system ]; then
  $( [ "$(id -u)" != 0 ] && echo sudo ) systemctl disable --now kamailio >/dev/null 2>&1 || true
elif [ -d /run/systemd/system ] && systemctl is-active --quiet kamailio 2>/dev/null; then
  echo "note: kamailio.service is running; it holds the SIP port talkover serves on (systemctl disable --now kamailio)"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q torch==2.13.0  # before anything that depends on torch: the CPU wheel, not CUDA
if [ $want_test = 1 ]; then
  .venv/bin/pip install -q -e '.[test,moshi,data]'
  # Kyutai's moshi (tests/test_engine_moshi.py): its pins would pull a CUDA torch (7 GB), so without them
  .venv/bin/pip install -q --no-deps moshi==0.2.13
else
  .venv/bin/pip install -q -e .
fi
# Silero VAD's ONNX model only (gateway/media/silero.py): its wheel declares torch, which we do not need for it.
.venv/bin/pip install -q --no-deps silero-vad==6.2.3
echo "talkover installed in $(pwd)/.venv"
