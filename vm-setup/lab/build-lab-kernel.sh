#!/bin/sh
# Build one swaprace lab kernel on the host (called by swaprace/vm/lab.py; runnable by hand).
#
#   build-lab-kernel.sh SOURCE_TARBALL BUILD_DIR LOCALVERSION OUTPUT PATCH...
#
# One shared build tree per source: BUILD_DIR/src is the tarball extracted once, BUILD_DIR/obj the object
# tree (make O=obj). Each call first puts every file a lab patch touches back to its pristine copy
# (BUILD_DIR/pristine/), applies PATCH... to a scratch copy and writes a source file only when its text
# changes, and replaces obj/.config only when the generated config changes: so building the other lab kernel
# after one is an incremental rebuild (mm/memory.o, the version files and the vmlinux link). The config is
# defconfig + kvm_guest.config + vm-setup/lab/lab.config (next to this script). OUTPUT gets the bzImage.
set -eu
[ $# -ge 4 ] || { echo "usage: $0 SOURCE_TARBALL BUILD_DIR LOCALVERSION OUTPUT PATCH..." >&2; exit 2; }
tarball=$1 build=$2 localversion=$3 output=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
jobs=${SWAPRACE_LAB_JOBS:-$(nproc)}
say() { echo "build-lab-kernel[$(date +%H:%M:%S)]: $*"; }

mkdir -p "$build"
stamp="$(stat -c '%s %Y' "$tarball") $tarball"
if [ ! -d "$build/src" ] || [ "$(cat "$build/source.stamp" 2>/dev/null)" != "$stamp" ]; then
    say "extracting $tarball (fresh build tree)"
    rm -rf "$build/src" "$build/obj" "$build/pristine" "$build/src.new"
    mkdir -p "$build/src.new"
    tar -xf "$tarball" -C "$build/src.new" --strip-components=1
    mv "$build/src.new" "$build/src"
    echo "$stamp" > "$build/source.stamp"
fi

# Files the patches touch (patch -p1 paths), pristine copies kept once.
files=$(for p in "$@"; do sed -n 's#^+++ b/\([^[:space:]]*\).*#\1#p' "$p"; done | sort -u)
scratch=$(mktemp -d "$build/scratch.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
for f in $files; do
    if [ ! -f "$build/pristine/$f" ]; then
        mkdir -p "$(dirname "$build/pristine/$f")"
        # Exactly <top>/$f: a bare "*/$f" also matches arch/*/$f (arch/m68k/mm/memory.c), and -O concatenates.
        tar -xf "$tarball" -O --wildcards --no-wildcards-match-slash "*/$f" > "$build/pristine/$f.tmp"
        mv "$build/pristine/$f.tmp" "$build/pristine/$f"
    fi
    mkdir -p "$(dirname "$scratch/$f")"
    cp "$build/pristine/$f" "$scratch/$f"
done
for p in "$@"; do
    say "patch $(basename "$p")"
    (cd "$scratch" && patch -p1 --quiet --no-backup-if-mismatch < "$p")
done
for f in $files; do
    cmp -s "$scratch/$f" "$build/src/$f" || cp "$scratch/$f" "$build/src/$f"
done

# Config: generated in its own small tree, copied over obj/.config only when it differs.
rm -rf "$build/cfg"
make -s -C "$build/src" O="$build/cfg" defconfig >/dev/null
make -s -C "$build/src" O="$build/cfg" kvm_guest.config >/dev/null
"$build/src/scripts/kconfig/merge_config.sh" -m -O "$build/cfg" "$build/cfg/.config" "$here/lab.config" >/dev/null
make -s -C "$build/src" O="$build/cfg" olddefconfig >/dev/null
# Every fragment line must have made it (a symbol that does not exist or whose dependencies are missing).
grep -E '^CONFIG_[A-Z0-9_]+=' "$here/lab.config" | while IFS= read -r line; do
    name=${line%%=*} value=${line#*=}
    if [ "$value" = n ]; then
        grep -qx "$name=y" "$build/cfg/.config" && say "warning: $name=y despite lab.config" || true
    else
        grep -qx "$line" "$build/cfg/.config" || say "warning: $line did not stick ($(grep "^$name=\|^# $name " "$build/cfg/.config" || echo absent))"
    fi
done
mkdir -p "$build/obj"
cmp -s "$build/cfg/.config" "$build/obj/.config" || cp "$build/cfg/.config" "$build/obj/.config"
rm -rf "$build/cfg"

say "make -j$jobs bzImage LOCALVERSION=$localversion"
start=$(date +%s)
make -s -C "$build/src" O="$build/obj" -j"$jobs" LOCALVERSION="$localversion" bzImage
say "make took $(( $(date +%s) - start )) s"
release=$(cat "$build/obj/include/config/kernel.release")
cp "$build/obj/arch/x86/boot/bzImage" "$output.tmp"
mv "$output.tmp" "$output"
say "built $release -> $output"
echo "release=$release"
