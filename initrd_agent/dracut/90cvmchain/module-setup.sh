#!/bin/bash
# dracut module "cvmchain": put the cvmchain agent, its MicroPython runtime bundle (with its
# own loader and libraries, copied as is), its configuration and the IMA policy into the
# initrd, and run the agent from a pre-pivot hook: after the real root is mounted at
# $NEWROOT, before switch_root. The initramfs-tools counterpart is
# initrd_agent/initramfs-tools/{hooks,scripts/local-bottom}/cvmchain.

# Included whenever the agent is installed in the system dracut runs on.
check() {
    [ -x /usr/lib/cvmchain/runtime/bin/micropython-run ] || return 1
    [ -f /usr/lib/cvmchain/agent/cvmchain_agent.py ] || return 1
    [ -f /etc/cvmchain/agent.conf ] || return 1
    return 0
}

depends() {
    return 0
}

install() {
    mkdir -p "${initdir}/usr/lib/cvmchain" "${initdir}/etc/cvmchain"
    # the runtime bundle runs with its own loader and libraries: copied, never resolved
    # against the system's libraries by dracut-install
    cp -a /usr/lib/cvmchain/runtime /usr/lib/cvmchain/agent /usr/lib/cvmchain/shared_spec \
        "${initdir}/usr/lib/cvmchain/" || return 1
    cp -a /etc/cvmchain/. "${initdir}/etc/cvmchain/" || return 1
    # micropython-run needs dirname; the hook's halt needs sleep
    inst_multiple dirname sleep
    inst_hook pre-pivot 90 "${moddir}/cvmchain-pre-pivot.sh"
}
