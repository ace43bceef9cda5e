#!/usr/bin/env bash
# Packages a built `confab` for installation: the binary stripped, its
# debug info split into a file of its own (linked by .gnu_debuglink, so
# gdb and perf find it when it sits beside the binary or under
# /usr/lib/debug), the systemd unit and a production configuration.
#
#   scripts/dist.sh [BINARY] [OUT_DIR]      (defaults: target/release/confab target/dist)
#
# Writes OUT_DIR/confab-<version>-<arch>-linux.tar.gz (binary, unit,
# config, INSTALL) and OUT_DIR/confab-<version>-<arch>-linux-debug.tar.gz
# (confab.debug), and leaves both unpacked beside them.
set -euo pipefail

bin=${1:-target/release/confab}
out=${2:-target/dist}
root=$(cd "$(dirname "$0")/.." && pwd)

for tool in objcopy readelf; do
    command -v "$tool" >/dev/null || { echo "dist: $tool is missing (binutils; make deps installs it)" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "dist: no binary at $bin (make dist builds it)" >&2; exit 1; }
if ! readelf -S "$bin" | grep -q '\.debug_info'; then
    echo "dist: $bin has no debug info to split out (build with the release profile)" >&2
    exit 1
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$("$bin" --version | awk '{print $2}')
name="confab-$version-$(uname -m)-linux"
dir="$out/$name"
debug_dir="$out/$name-debug"
rm -rf "$dir" "$debug_dir"
mkdir -p "$dir" "$debug_dir"

objcopy --only-keep-debug --compress-debug-sections=zlib "$bin" "$debug_dir/confab.debug"
chmod 0644 "$debug_dir/confab.debug"
# The link names the file and carries its checksum; the debugger looks for
# it beside the binary, in .debug/ there, and under /usr/lib/debug.
objcopy --strip-all --add-gnu-debuglink="$debug_dir/confab.debug" "$bin" "$dir/confab"
chmod 0755 "$dir/confab"

install -m 0644 "$root/deploy/systemd/confab.service" "$dir/confab.service"
install -m 0644 "$root/deploy/confab.toml" "$dir/confab.toml"
cat > "$dir/INSTALL" <<TXT
confab $version

  install -m 0755 confab /usr/local/bin/confab
  install -d /etc/confab && install -m 0644 confab.toml /etc/confab/confab.toml
  install -m 0644 confab.service /etc/systemd/system/confab.service
  systemctl daemon-reload && systemctl enable --now confab

Debug info (for gdb, perf and crash reports) is in the -debug archive:
  install -D -m 0644 confab.debug /usr/lib/debug/usr/local/bin/confab.debug

Sizing, kernel settings, TLS, backups and upgrades: docs/operations.md.
TXT

tar -C "$out" -czf "$out/$name.tar.gz" "$name"
tar -C "$debug_dir" -czf "$out/$name-debug.tar.gz" confab.debug
echo "$out/$name.tar.gz"
echo "$out/$name-debug.tar.gz"
