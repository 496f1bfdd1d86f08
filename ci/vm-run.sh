#!/usr/bin/env bash
# vm-run.sh: run one command inside a throwaway QEMU guest.
#
#   ci/vm-run.sh --setup                          # once per machine (root): packages + guest kernel
#   ci/vm-run.sh [OPTIONS] -- COMMAND [ARG...]
#
# Why: the machines we build on often lack RDMA hardware, have a kernel without
# InfiniBand/rdma_rxe support, and have a single NUMA node. The guest boots
# Debian's own distribution kernel (which ships rdma_rxe and NUMA support), so
# we can exercise real verbs over a soft-RoCE device and real NUMA placement.
#
# What the guest looks like:
#   * this machine's root file system, mounted read-only over 9p, is the
#     guest's root: binaries built here run there unchanged, at the same paths;
#   * /tmp, /run and /dev/shm are fresh tmpfs; every `--rw DIR` is shared
#     read-write and every `--ro DIR` read-only at the same path (use --ro for
#     anything under /tmp the guest must see; the current directory is shared
#     read-only automatically when it lies under /tmp or /run);
#   * one virtio NIC, eth0 = 10.0.2.15/24 (QEMU user networking, cut off
#     from the outside with restrict=on) carrying the soft-RoCE device `rxe0`;
#   * `--numa N` splits memory and CPUs over N NUMA nodes;
#   * COMMAND runs as root in the current directory; its exit status becomes
#     this script's exit status (124 when the guest never reported one).
#
# Options:
#   --setup            install the host packages and fetch the guest kernel, then
#                      exit (or go on to run COMMAND if one is given)
#   --numa N           give the guest N NUMA nodes (default 1)
#   --cpus N           guest CPUs (default: host CPUs, at most 4; at least one per node)
#   --mem MB           guest memory in MiB (default 2048), split evenly over nodes
#   --rw DIR           share DIR read-write at the same path (repeatable)
#   --ro DIR           share DIR read-only at the same path (repeatable)
#   --env NAME=VALUE   set an environment variable for COMMAND (repeatable)
#   --timeout SECONDS  kill the guest after this long (default 900)
#   --verbose          show the guest kernel's boot messages
#
# Environment: FERROPS_VM_CACHE overrides where the guest kernel is kept.
#
# Notes from making this work on a 2-core machine without usable KVM:
#   * plain TCG emulation (-accel tcg) is used; booting takes about 10 s;
#   * the guest kernel's modules are loaded with busybox insmod from the
#     initramfs, in the order `modprobe --show-depends` computes from the
#     kernel's own modules.dep (generated with depmod at setup time);
#   * 9p needs version=9p2000.L and a large msize to be usable, and
#     multidevs=remap on the host side because / spans several file systems.
set -euo pipefail

die() {
  echo "vm-run: $*" >&2
  exit 2
}

# ---------------------------------------------------------------------------
# Configuration and defaults
# ---------------------------------------------------------------------------
if [ -n "${FERROPS_VM_CACHE:-}" ]; then
  CACHE=$FERROPS_VM_CACHE
elif [ "$(id -u)" -eq 0 ]; then
  CACHE=/var/cache/ferrops-vm
else
  CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ferrops-vm
fi

HOST_PACKAGES=(qemu-system-x86 busybox-static cpio kmod rdma-core ibverbs-providers
  ibverbs-utils rdmacm-utils perftest numactl iproute2 xz-utils zstd)

# Modules the guest needs, by job. Their dependencies are added automatically.
GUEST_MODULES=(
  virtio_pci          # the PCI transport for every virtio device below
  9pnet_virtio 9p     # the root and the --rw/--ro shares
  virtio_net          # eth0
  crc32_generic       # rxe checksums use the crypto API's "crc32"
  rdma_rxe            # soft-RoCE
  ib_uverbs           # /dev/infiniband/uverbs*: verbs from user space
  rdma_ucm            # /dev/infiniband/rdma_cm: librdmacm from user space
  veth bridge         # `ferrops faults`: a namespace per node, joined on a bridge
  sch_netem           # `ferrops faults --netem`: delay and loss on those links
)

NUMA_NODES=1
CPUS=
MEM_MB=2048
TIMEOUT=900
VERBOSE=0
DO_SETUP=0
SHARES=() # "rw DIR" or "ro DIR"
GUEST_ENV=()

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" | sed -n '1,/^Environment/p' >&2
  exit 2
}

is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

while [ $# -gt 0 ]; do
  case "$1" in
    --setup) DO_SETUP=1; shift ;;
    --numa) is_count "${2:-}" || die "--numa needs a positive count"; NUMA_NODES=$2; shift 2 ;;
    --cpus) is_count "${2:-}" || die "--cpus needs a positive count"; CPUS=$2; shift 2 ;;
    --mem) is_count "${2:-}" || die "--mem needs MiB"; MEM_MB=$2; shift 2 ;;
    --timeout) is_count "${2:-}" || die "--timeout needs seconds"; TIMEOUT=$2; shift 2 ;;
    --rw | --ro)
      [ -d "${2:-}" ] || die "$1 needs an existing directory"
      SHARES+=("${1#--} $(realpath "$2")")
      shift 2
      ;;
    --env) [[ ${2:-} == *=* ]] || die "--env needs NAME=VALUE"; GUEST_ENV+=("$2"); shift 2 ;;
    --verbose) VERBOSE=1; shift ;;
    -h | --help) usage ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done

# ---------------------------------------------------------------------------
# --setup: host packages and the guest kernel
# ---------------------------------------------------------------------------
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $*"
  fi
}

setup_host_packages() {
  local pkg missing=()
  for pkg in "${HOST_PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" = installed ] \
      || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "vm-run: installing ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The concrete kernel package behind the linux-image-amd64 meta package.
guest_kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

setup_guest_kernel() {
  local pkg dest tmp
  pkg=$(guest_kernel_package)
  if [ -z "$pkg" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    pkg=$(guest_kernel_package)
  fi
  [ -n "$pkg" ] || die "cannot tell which package linux-image-amd64 depends on"
  dest="$CACHE/$pkg"
  if [ -f "$dest/.complete" ]; then
    echo "vm-run: guest kernel $pkg already in $dest" >&2
    return 0
  fi
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) || die "apt-get download $pkg failed"
  dpkg -x "$tmp"/*.deb "$tmp/root"
  # Kernel packages ship without modules.dep: depmod writes it (needed below
  # for the module load order).
  local moddir kver
  moddir=$(find_module_dir "$tmp/root") || die "no modules in $pkg"
  kver=$(basename "$moddir")
  depmod -b "${moddir%/lib/modules/*}" "$kver"
  rm -rf "$dest"
  mv "$tmp/root" "$dest"
  rm -rf "$tmp"
  touch "$dest/.complete"
  # Point "current" at the newest fetched kernel.
  ln -sfn "$pkg" "$CACHE/current"
  echo "vm-run: guest kernel $pkg fetched into $dest" >&2
}

# Prints the lib/modules/<version> directory under a kernel package root.
find_module_dir() {
  local d
  for d in "$1"/lib/modules/* "$1"/usr/lib/modules/*; do
    [ -d "$d/kernel" ] && { echo "$d"; return 0; }
  done
  return 1
}

if [ "$DO_SETUP" -eq 1 ]; then
  setup_host_packages
  setup_guest_kernel
  [ $# -eq 0 ] && exit 0
fi
[ $# -gt 0 ] || usage

# ---------------------------------------------------------------------------
# Locate the guest kernel
# ---------------------------------------------------------------------------
KROOT="$CACHE/current"
[ -f "$KROOT/.complete" ] || die "no guest kernel in $CACHE: run '$0 --setup' first"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run '$0 --setup' first"
MODDIR=$(find_module_dir "$KROOT") || die "guest kernel in $KROOT has no modules"
KVER=$(basename "$MODDIR")
VMLINUZ="$KROOT/boot/vmlinuz-$KVER"
[ -f "$VMLINUZ" ] || die "missing $VMLINUZ"

# Emulated CPUs beyond a few only slow TCG down.
HOST_CPUS=$(nproc)
[ -n "$CPUS" ] || CPUS=$((HOST_CPUS < 4 ? HOST_CPUS : 4))
[ "$CPUS" -ge "$NUMA_NODES" ] || CPUS=$NUMA_NODES

# ---------------------------------------------------------------------------
# Build the initramfs: busybox, the modules, and an init script
# ---------------------------------------------------------------------------
WORK=$(mktemp -d)
# shellcheck disable=SC2317 # called through the trap
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

INITRD_ROOT="$WORK/initrd"
mkdir -p "$INITRD_ROOT"/{bin,modules,proc,sys,dev,newroot}
BUSYBOX=$(command -v busybox) || die "busybox missing: run '$0 --setup' first"
cp "$BUSYBOX" "$INITRD_ROOT/bin/busybox"
for applet in sh mount mkdir insmod chroot poweroff sleep cat echo; do
  ln -s busybox "$INITRD_ROOT/bin/$applet"
done

# Module load order: modprobe prints "insmod PATH" for every dependency before
# the module itself (and "builtin NAME" for built-in ones, which we skip).
MODULE_LIST="$WORK/modules.order"
: >"$MODULE_LIST"
for m in "${GUEST_MODULES[@]}"; do
  modprobe --show-depends --dirname "${MODDIR%/lib/modules/*}" --set-version "$KVER" "$m" \
    || die "module $m is not in guest kernel $KVER"
done | awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++' >"$MODULE_LIST.paths"
n=0
while read -r path; do
  n=$((n + 1))
  name=$(printf '%02d-%s' "$n" "$(basename "${path%%.ko*}")")
  case "$path" in
    *.ko.xz) xz -dc "$path" >"$INITRD_ROOT/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$path" >"$INITRD_ROOT/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$path" >"$INITRD_ROOT/modules/$name.ko" ;;
    *) cp "$path" "$INITRD_ROOT/modules/$name.ko" ;;
  esac
done <"$MODULE_LIST.paths"

# The job for the guest travels through a small read-write 9p share, which is
# also where the guest leaves the command's exit status.
JOB="$WORK/job"
mkdir -p "$JOB"
printf '%q ' "$@" >"$JOB/command"
printf '%s\n' "$PWD" >"$JOB/cwd"
# The guest gets fresh tmpfs on /tmp and /run: a current directory there must be
# shared explicitly for the command to start in it.
case "$PWD/" in
  /tmp/* | /run/*) SHARES+=("ro $PWD") ;;
esac
# Parents before children, so nested shares stack correctly; numbered in this
# order (the guest mounts tag share<N> for line N).
printf '%s\n' "${SHARES[@]+"${SHARES[@]}"}" | awk 'NF' | sort -k2,2 >"$JOB/shares"
{
  for kv in "${GUEST_ENV[@]+"${GUEST_ENV[@]}"}"; do
    printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
} >"$JOB/env"

# Runs as PID 1 in the initramfs: load modules, mount the shares, switch into
# the host root and run the command there; then power off.
cat >"$INITRD_ROOT/init" <<'INIT'
#!/bin/sh
P9="trans=virtio,version=9p2000.L,msize=524288"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for ko in /modules/*.ko; do
  insmod "$ko" || echo "vm-run(guest): could not load $ko"
done
if ! mount -t 9p -o "$P9,ro" hostroot /newroot; then
  echo "vm-run(guest): cannot mount the host root"; poweroff -f
fi
for fs in proc sys dev; do mount --move /$fs /newroot/$fs; done
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot/dev/pts /newroot/dev/shm /newroot/run/vm-job
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t 9p -o "$P9" job /newroot/run/vm-job
i=0
while read -r mode dir; do
  mkdir -p "/newroot$dir" 2>/dev/null
  mount -t 9p -o "$P9,$mode" "share$i" "/newroot$dir" || echo "vm-run(guest): cannot mount $dir"
  i=$((i + 1))
done < /newroot/run/vm-job/shares
# bash, not sh: the command was quoted with bash's printf %q.
exec chroot /newroot /bin/bash -c '
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
  . /run/vm-job/env
  ip link set lo up
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0
  rdma link add rxe0 type rxe netdev eth0 || echo "vm-run(guest): rxe0 not created"
  cd "$(cat /run/vm-job/cwd)" || exit 1
  echo "--- vm-run: command starts ---"
  eval "$(cat /run/vm-job/command)" </dev/null
  echo $? > /run/vm-job/status
  echo "--- vm-run: command ended ---"
  sync
  poweroff -f
' </dev/console >/dev/console 2>&1
INIT
chmod +x "$INITRD_ROOT/init"
(cd "$INITRD_ROOT" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initrd.gz"

# ---------------------------------------------------------------------------
# QEMU command line
# ---------------------------------------------------------------------------
QEMU=(qemu-system-x86_64 -accel tcg -cpu max -smp "$CPUS" -m "${MEM_MB}M"
  -nographic -no-reboot -vga none -nodefaults -serial stdio
  -kernel "$VMLINUZ" -initrd "$WORK/initrd.gz")

KCMD="console=ttyS0 panic=-1 rdinit=/init"
[ "$VERBOSE" -eq 1 ] || KCMD="$KCMD quiet loglevel=2"
QEMU+=(-append "$KCMD")

# NUMA: one RAM backend per node, memory split evenly (in whole MiB, the last
# node takes the remainder), CPUs dealt out in contiguous blocks.
if [ "$NUMA_NODES" -gt 1 ]; then
  per_node=$((MEM_MB / NUMA_NODES))
  cpu=0
  for ((node = 0; node < NUMA_NODES; node++)); do
    size=$per_node
    [ "$node" -eq $((NUMA_NODES - 1)) ] && size=$((MEM_MB - per_node * (NUMA_NODES - 1)))
    ncpu=$((CPUS / NUMA_NODES + (node < CPUS % NUMA_NODES ? 1 : 0)))
    QEMU+=(-object "memory-backend-ram,id=ram$node,size=${size}M"
      -numa "node,nodeid=$node,memdev=ram$node,cpus=$cpu-$((cpu + ncpu - 1))")
    cpu=$((cpu + ncpu))
  done
fi

share() { # share TAG DIR [readonly]
  local opts="local,id=fs_$1,path=$2,security_model=none,multidevs=remap"
  [ "${3:-}" = readonly ] && opts="$opts,readonly=on"
  QEMU+=(-fsdev "$opts" -device "virtio-9p-pci,fsdev=fs_$1,mount_tag=$1")
}
share hostroot / readonly
share job "$JOB"
i=0
while read -r mode dir; do
  if [ "$mode" = ro ]; then share "share$i" "$dir" readonly; else share "share$i" "$dir"; fi
  i=$((i + 1))
done <"$JOB/shares"
QEMU+=(-netdev "user,id=net0,restrict=on" -device "virtio-net-pci,netdev=net0,romfile=")

# ---------------------------------------------------------------------------
# Run, and hand back the command's exit status
# ---------------------------------------------------------------------------
# The console carries firmware and boot noise before the command starts; we
# show only what comes between the start and end markers (everything with --verbose), with
# terminal escape sequences removed. The raw log is kept for diagnosis.
CONSOLE_LOG="$WORK/console.log"
set +e
timeout --kill-after=10 "$TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 \
  | tee "$CONSOLE_LOG" \
  | sed -u -e $'s/\e\\[[0-9;?]*[a-zA-Z]//g' -e 's/\r$//' \
  | awk -v all="$VERBOSE" '
      /--- vm-run: command ended ---/ { started = 0; next }
      started || all == 1 { print; fflush() }
      /--- vm-run: command starts ---/ { started = 1 }'
qemu_status=${PIPESTATUS[0]}
set -e

if [ -s "$JOB/status" ]; then
  exit "$(cat "$JOB/status")"
fi
echo "vm-run: last console lines:" >&2
tail -n 30 "$CONSOLE_LOG" | tr -d '\r' >&2
if [ "$qemu_status" -eq 124 ]; then
  echo "vm-run: guest timed out after ${TIMEOUT}s" >&2
else
  echo "vm-run: guest ended without reporting an exit status (qemu status $qemu_status)" >&2
fi
exit 124
