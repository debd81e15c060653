#!/bin/sh
# cvmchain (dracut pre-pivot hook, sourced by dracut's pre-pivot stage): measure the root
# file system (mounted at $NEWROOT) and the IMA policy into TDX RTMRs / vTPM PCRs before
# switch_root. The agent's logs go to /run/cvmchain; /run is moved into the real root by
# switch_root (systemd's and util-linux'), so they survive it.
#
# On failure with on_error=halt the boot stops here and never falls through unmeasured.
# dracut's own `die` is not enough: with rd.shell it opens a shell whose exit goes on, and
# under systemd dracut-pre-pivot.service is `ExecStart=-` (its failure is ignored) and
# `die` only queues a halt with --no-block before it exits. So this hook asks for the halt
# and then never returns: initrd-cleanup.service (After= dracut-pre-pivot.service) and
# switch_root never start; the halt, when systemd carries it out, ends the loop.
#
# Sourced, not run: only `_cvmchain_*` variables, unset at the end; no `exit` on success.

_cvmchain_dir=/usr/lib/cvmchain
mkdir -p /run/cvmchain
MICROPYPATH="$_cvmchain_dir/agent:$_cvmchain_dir" \
    "$_cvmchain_dir/runtime/bin/micropython-run" "$_cvmchain_dir/agent/cvmchain_agent.py" \
    --root "${NEWROOT:-/sysroot}" --config /etc/cvmchain/agent.conf > /dev/console 2>&1
_cvmchain_rc=$?
if [ "$_cvmchain_rc" -eq 3 ]; then
    # on_error=continue and nothing could be recorded: the configuration says boot on
    echo "cvmchain: nothing measured (exit 3, on_error=continue); booting unmeasured" \
        > /dev/console
elif [ "$_cvmchain_rc" -ne 0 ]; then
    echo "cvmchain: measurement failed (exit $_cvmchain_rc); boot halted" > /dev/console
    echo "<24>cvmchain: measurement failed (exit $_cvmchain_rc); refusing to boot unmeasured" \
        > /dev/kmsg 2> /dev/null
    mkdir -p /run/initramfs && : > /run/initramfs/.die
    if [ -n "$DRACUT_SYSTEMD" ]; then
        systemctl --no-block --force halt
    fi
    # never continue the boot from here
    while :; do sleep 3600; done
fi
unset _cvmchain_dir _cvmchain_rc
