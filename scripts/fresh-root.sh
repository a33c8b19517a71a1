#!/usr/bin/env bash
# Runs a command in a fresh Debian 12 (bookworm) root, as a newcomer's
# machine would be: a minimal debootstrap with Debian's stock packages only
# (stock cmake-data included), the CUDA toolkit mounted read-only at
# /usr/local/cuda with no ld.so.conf entry for it, and a clean clone of
# this repository at /src.  Nothing of this machine's build, packages or
# tweaks is visible inside.
#
#   scripts/fresh-root.sh [--cache DIR] [--ref REF] [--keep] [--] COMMAND...
#
#   COMMAND   run by bash -c in /src, as root, with a clean environment;
#             its exit status is this script's
#   --ref     what to clone (default HEAD); uncommitted changes are not seen
#   --cache   keep the debootstrapped base in DIR/base and apt's downloaded
#             packages in DIR/apt, so later runs download nothing twice.
#             Each run still works on its own copy of the base, so packages
#             are installed afresh every time.  Without --cache, everything
#             lives in a temporary folder and goes at exit.
#   --keep    keep the run's root (printed at exit) instead of removing it
#
# Environment: CUDA_HOME (the toolkit to mount; default /usr/local/cuda),
# CKPT_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# CKPT_FRESH_ROOT_TMPFS=0 (keep the run's root on disk even where there is
# memory for a tmpfs).  Needs root
# (mount, chroot) and debootstrap (installed with apt-get when missing).
# Every mount is undone on every way out (trap), and the root is removed
# only once nothing is mounted under it any more.
set -euo pipefail

usage() {
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

cache="" ref=HEAD keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --cache) cache=${2:?--cache needs a folder}; shift 2 ;;
    --ref) ref=${2:?--ref needs a revision}; shift 2 ;;
    --keep) keep=1; shift ;;
    --) shift; break ;;
    -h | --help) usage ;;
    -*) echo "fresh-root: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || usage
cmd="$*"
mirror=${CKPT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

say() { echo "fresh-root: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, mount, chroot)"
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
commit=$(git -C "$repo" rev-parse --verify "$ref^{commit}") || die "no revision $ref"
cuda=${CUDA_HOME:-/usr/local/cuda}
if [ -e "$cuda" ]; then
  cuda=$(readlink -f "$cuda")
  [ -x "$cuda/bin/nvcc" ] || die "$cuda has no bin/nvcc (set CUDA_HOME to the toolkit)"
else
  say "no CUDA toolkit at $cuda: the root gets none"
  cuda=""
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/ckpt-fresh-XXXXXX")
root=$work/root
mounted=() # mount points, in the order they were made

# Ends what still runs inside the root (by process id), then undoes the
# mounts, newest first, and removes the run's folder unless --keep.
cleanup() {
  local rc=$? pid i left t=$SECONDS
  set +e
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$root" ] && kill -KILL "$pid" 2>/dev/null
  done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" ||
      say "could not unmount ${mounted[i]}"
  done
  left=$(awk -v r="$root/" 'index($2 "/", r) == 1 {print $2}' /proc/self/mounts)
  if [ -n "$left" ]; then
    say "still mounted, so $work is left in place: $left"
  elif [ "$keep" = 1 ]; then
    say "kept the root: $root"
  else
    rm -rf --one-file-system "$work"
  fi
  say "cleaned up in $((SECONDS - t)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mnt() { # mnt TARGET MOUNT-ARGUMENTS...: mounts and remembers it
  local target=$1
  shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounted+=("$target")
}

t0=$SECONDS
# The base: debootstrap once (into the cache when one is given).
base=${cache:+$cache/base}
base=${base:-$work/base}
if [ -f "$base/.ckpt-fresh-root" ]; then
  say "base root: cached in $base"
else
  command -v debootstrap >/dev/null || {
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  }
  rm -rf --one-file-system "$base.tmp"
  say "debootstrap $suite (minbase) from $mirror into $base"
  debootstrap --variant=minbase "$suite" "$base.tmp" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  cat >"$base.tmp/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
EOF
  touch "$base.tmp/.ckpt-fresh-root"
  rm -rf --one-file-system "$base"
  mv "$base.tmp" "$base"
  say "debootstrap took $((SECONDS - t0)) s"
fi

t1=$SECONDS
# The run's root lives in memory where there is room: about 2 GB once the
# packages are installed and the tree built; dpkg's many fsyncs cost nothing
# there, and removing it is an unmount instead of a minute of deletes.
avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
if [ "${CKPT_FRESH_ROOT_TMPFS:-auto}" != 0 ] && [ "${avail_kb:-0}" -ge $((8 << 20)) ]; then
  mnt "$root" -t tmpfs -o size=6g,mode=0755 fresh-root
  say "root on a tmpfs (6 GiB at most; CKPT_FRESH_ROOT_TMPFS=0 puts it on disk)"
fi
if [ "$base" = "$work/base" ] && [ ! -d "$root" ]; then
  mv "$base" "$root"
else
  mkdir -p "$root"
  cp -a "$base/." "$root/"
  [ "$base" = "$work/base" ] && rm -rf --one-file-system "$base"
fi
rm -f "$root/.ckpt-fresh-root"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# The network's trust, as on any machine of this network: where this
# machine's pip reaches PyPI through a TLS proxy with its own CA (pip.conf
# naming a CA bundle), the root gets a pip.conf naming a copy of that
# bundle, kept outside /etc/ssl so that installing ca-certificates in the
# root does not rewrite it.  Nothing else of this machine's configuration.
if [ -r /etc/pip.conf ]; then
  ca=$(sed -n 's/^[[:space:]]*cert[[:space:]]*=[[:space:]]*//p' /etc/pip.conf | head -n 1)
  if [ -n "$ca" ] && [ -r "$ca" ]; then
    cp -L "$ca" "$root/etc/pip-ca.crt"
    printf '[global]\ncert = /etc/pip-ca.crt\n' >"$root/etc/pip.conf"
  fi
fi
mnt "$root/proc" -t proc proc
mnt "$root/sys" -t sysfs -o ro sysfs
mnt "$root/dev" --bind /dev
mnt "$root/dev/pts" --bind /dev/pts
mnt "$root/dev/shm" -t tmpfs -o mode=1777 shm
if [ -n "$cuda" ]; then
  mnt "$root/usr/local/cuda" --bind "$cuda"
  mount -o remount,bind,ro "$root/usr/local/cuda"
fi
if [ -n "$cache" ]; then
  mkdir -p "$cache/apt"
  mnt "$root/var/cache/apt/archives" --bind "$cache/apt"
fi
git clone --quiet --no-hardlinks "$repo" "$root/src"
git -C "$root/src" -c advice.detachedHead=false checkout --quiet "$commit"
say "root ready in $((SECONDS - t1)) s: $root, /src at ${commit:0:12}${cuda:+, CUDA from $cuda}"

t2=$SECONDS
rc=0
chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/bash -c "cd /src && $cmd" || rc=$?
say "command exited $rc after $((SECONDS - t2)) s (whole run $((SECONDS - t0)) s)"
exit "$rc"
