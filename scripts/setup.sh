#!/bin/bash
# Set up this checkout on Debian 12 (run as root): the Debian packages cvmchain
# drives (QEMU, OVMF, swtpm, tpm2-tools, libguestfs, mmdebstrap, ...), a
# virtualenv in .venv with the project and its test tools, and the pinned
# MicroPython runtime bundle. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    qemu-system-x86 qemu-utils ovmf swtpm swtpm-tools tpm2-tools
    libguestfs-tools python3-guestfs mmdebstrap busybox-static cpio
    e2fsprogs dosfstools mtools fdisk zstd xz-utils lz4 initramfs-tools-core
    cryptsetup-bin dmsetup linux-image-amd64
    python3 python3-venv python3-pip git ca-certificates
    libtss2-dev pkg-config gcc libc6-dev python3-dev libssl-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing Debian packages: ${missing[*]}; run this script as root" >&2
        exit 2
    fi
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# cryptsetup-bin, dmsetup and linux-image-amd64 (a kernel with its modules in /lib/modules):
# the dm-verity boot test; libtss2-dev, pkg-config, gcc: building tpm2-pytss (TPM quotes),
# whose Debian 12 package does not import next to the cryptography the project needs;
# gcc, python3-dev, libssl-dev: shared_spec's optional C kernels (shared_spec/_speedups.c).
# Debian's python3 (not a pyenv build) so that python3-guestfs is importable.
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.cvmchain-installed
want=$(cat pyproject.toml setup.py shared_spec/_speedups.c | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test,dev,tpm]'
    echo "$want" > "$stamp"
fi

.venv/bin/python -m initrd_agent.runtime_bundle fetch >/dev/null
echo "setup: ready (.venv/bin/cvmchain, .venv/bin/nox)"
