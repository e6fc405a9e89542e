#!/usr/bin/env bash
# The emulated Raspberry Pi check (not a test: minutes of emulation, needs root, Debian's mirror and PyPI).
#
# Builds a Raspberry Pi OS-like userland (Debian bookworm arm64 or armhf, Python 3.11, distro numpy) with
# debootstrap + qemu-user-static, installs the agent from `tinyexit agent-bundle` inside it with the bundle's
# install.sh, serves the bundle on a pty from inside the chroot (qemu-aarch64 runs the agent) and benches it
# from this host with both kernel sets (tools/pi/agent_bench.py).  The chroot sees /proc and /dev but NOT
# /sys: with /sys visible, LiteRT crashed in Interpreter.__init__ under qemu 7.2 (issue 16).  pip inside
# uses this host's CA bundle (a TLS-intercepting proxy's CA would otherwise be unknown there).
#
# usage: sudo tools/pi/emulated_pi_check.sh [RUN_DIR [MODEL]]      (default /work/runs/demo1 classifier)
#   PI_ARCH=arm64 (64-bit Pi OS, default) or armhf (32-bit: armv7l, tflite-runtime, the distro's numpy)
#   ROOTFS=/var/tmp/tinyexit-pi-$PI_ARCH   where the userland lives (kept between runs; delete to rebuild)
#   OUT=...                              where the bench results and agreement-*.json go
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUN=${1:-/work/runs/demo1}
MODEL=${2:-classifier}
PI_ARCH=${PI_ARCH:-arm64}
case "$PI_ARCH" in
  arm64) QEMU=qemu-aarch64 ;;
  armhf) QEMU=qemu-arm ;;
  *) echo "emulated-pi: PI_ARCH=$PI_ARCH: arm64 or armhf" >&2; exit 2 ;;
esac
ROOTFS=${ROOTFS:-/var/tmp/tinyexit-pi-$PI_ARCH}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tinyexit-pi-check.XXXXXX")}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PY="$REPO/.venv/bin/python"
log() { echo "emulated-pi: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot, mounts)"; exit 2; }
for tool in debootstrap "$QEMU-static"; do
  command -v "$tool" >/dev/null || { log "$tool missing: apt-get install debootstrap qemu-user-static"; exit 2; }
done
# qemu-user-static registers binfmt handlers; in a container binfmt_misc may need mounting first
if [ ! -e "/proc/sys/fs/binfmt_misc/$QEMU" ]; then
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable "$QEMU"
fi

if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
  log "debootstrap bookworm $PI_ARCH -> $ROOTFS (several minutes under emulation)"
  debootstrap --arch="$PI_ARCH" --variant=minbase \
    --include=python3,python3-venv,python3-pip,python3-numpy,ca-certificates bookworm "$ROOTFS" "$MIRROR"
fi
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/host-ca-bundle.crt"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"

mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" || true; done; }
trap cleanup EXIT
for m in proc dev dev/pts; do
  mkdir -p "$ROOTFS/$m"
  if ! mountpoint -q "$ROOTFS/$m"; then
    if [ "$m" = proc ]; then mount -t proc proc "$ROOTFS/proc"; else mount --bind "/$m" "$ROOTFS/$m"; fi
    mounted=("$ROOTFS/$m" "${mounted[@]}")
  fi
done
if [ -e "$ROOTFS/sys/kernel" ]; then log "$ROOTFS/sys is populated; unmount it (LiteRT crashes with /sys visible)"; exit 2; fi

log "agent bundle of $RUN ($MODEL) -> $ROOTFS/opt/pi-agent"
rm -rf "$ROOTFS/opt/pi-agent"
"$REPO/.venv/bin/tinyexit" agent-bundle "$RUN" --model "$MODEL" --out "$ROOTFS/opt/pi-agent"
IN_PI=(chroot "$ROOTFS" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8
       PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt
       PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180)
log "inside: uname -m = $("${IN_PI[@]}" uname -m), $("${IN_PI[@]}" python3 --version)"
if [ ! -x "$ROOTFS/opt/tinyexit-venv/bin/tinyexit" ] || [ -n "${REINSTALL:-}" ]; then
  rm -rf "$ROOTFS/opt/tinyexit-venv"
  log "install.sh inside the userland (pip fetches the runtime install.sh picks for $("${IN_PI[@]}" uname -m))"
  "${IN_PI[@]}" sh /opt/pi-agent/install.sh --venv /opt/tinyexit-venv --system-site-packages | tee "$OUT/install.log"
else
  "${IN_PI[@]}" /opt/tinyexit-venv/bin/python -m pip install -q --no-deps --force-reinstall /opt/pi-agent/wheels/*.whl
fi

cp -r "$RUN/export/$MODEL" "$OUT/$MODEL"
rm -rf "$OUT/$MODEL/bench"
log "bench from the host, both kernel sets -> $OUT/$MODEL/bench"
"$PY" "$REPO/tools/pi/agent_bench.py" --bundle "$OUT/$MODEL" --name "$PI_ARCH" --boot-s 900 \
  --agent "${IN_PI[*]} /opt/tinyexit-venv/bin/tinyexit agent --port {port} --artifact /opt/pi-agent/bundles/$MODEL --kernels {kernels} --name emulated-pi-$PI_ARCH"
"$PY" "$REPO/tools/pi/cross_kernels.py" "$OUT/$MODEL" "$PI_ARCH-optimized" "$PI_ARCH-reference" | tee "$OUT/cross_kernels.txt"
log "done: $OUT"
