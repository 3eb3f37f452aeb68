#!/bin/bash
# Installs what building and testing the stack needs on a fresh Debian 12
# machine (root): Debian packages and the two musl Rust targets. Fast and
# silent when everything is already there.
set -euo pipefail

PACKAGES=(
    qemu-system-x86   # boot tests under TCG
    ovmf              # UEFI firmware (x64) for the boot tests
    ovmf-ia32         # UEFI firmware (ia32) for the i686 boot test
    fdisk             # sfdisk: checking the partition table
    qemu-utils        # qemu-img: image checks
    cpio              # inspecting initramfs images in tests
    xz-utils zstd     # test vectors, inspecting archives
    e2fsprogs dosfstools xfsprogs btrfs-progs  # loop-device storage tests
    util-linux        # losetup, partx, mount: loop-device storage tests
    mtools            # inspecting FAT images
    grub-common       # grub-mkimage: assembles the GRUB images at build time
    kmod              # depmod: cross-checking the module index the builder writes
    mmdebstrap arch-test  # test guests built from the Debian archive (arch-test: i386 guests)
    xorriso debian-archive-keyring  # the Tools ISO of the stage-2 tests (apt on the guest's release)
)

# `--peer` (`make deps-peer`): the peer that `make bench-peer` compares
# with, virt-v2v and its libguestfs appliance. Large (about 160 packages),
# so never part of the default dependencies.
PEER_PACKAGES=(
    virt-v2v nbdkit libnbd-bin  # the peer conversion (virt-v2v 2.2)
    linux-image-amd64           # supermin builds libguestfs' appliance from the host's kernel
)
if [ "${1:-}" = --peer ]; then
    PACKAGES+=("${PEER_PACKAGES[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi

# The i686 stack's packages come from the i386 archive.
if ! dpkg --print-foreign-architectures | grep -qx i386; then
    echo "install-deps: adding the i386 architecture"
    $SUDO dpkg --add-architecture i386
    NEED_UPDATE=1
fi

if [ ${#missing[@]} -gt 0 ] || [ -n "${NEED_UPDATE:-}" ]; then
    echo "install-deps: apt-get install ${missing[*]:-(update only)}"
    # A mirror in the middle of a sync fails one index now and then: retry,
    # and go on with the old lists when only some of them failed.
    for i in 1 2 3; do
        if $SUDO apt-get update -qq; then break; fi
        echo "install-deps: apt-get update failed (try $i), retrying" >&2
        sleep 5
    done
    if [ ${#missing[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

if command -v rustup >/dev/null; then
    installed=$(rustup target list --installed)
    for t in x86_64-unknown-linux-musl i686-unknown-linux-musl; do
        if ! grep -qx "$t" <<<"$installed"; then
            echo "install-deps: rustup target add $t"
            rustup target add "$t"
        fi
    done
    for c in clippy rustfmt; do
        if ! rustup component list --installed | grep -q "^$c"; then
            rustup component add "$c"
        fi
    done
else
    echo "install-deps: rustup is required (the musl targets are added with it)" >&2
    exit 1
fi
