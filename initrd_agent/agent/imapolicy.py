"""Load the IMA policy into the kernel: rule by rule, or by path.

The kernel takes one policy write session per open of
``<securityfs>/ima/policy`` and, without CONFIG_IMA_WRITE_POLICY, only one
in total: the file is opened once, each rule written with its own
``write(2)``, then closed. A rule the kernel rejects fails its write; the
error names the policy line and the kernel's errno.

``ima_policy_load=path`` writes the policy file's path instead, so the kernel
reads (and, with a POLICY_CHECK rule, measures) the file itself.
"""

import os

import libc


class PolicyError(Exception):
    """The policy could not be loaded; the message names the line and errno."""


def policy_rules(policy):
    """[(line number, rule bytes)]: non-blank, non-comment lines, stripped."""
    out = []
    n = 0
    for line in policy.split(b"\n"):
        n += 1
        s = line.strip()
        if s and not s.startswith(b"#"):
            out.append((n, s))
    return out


def ensure_securityfs(securityfs):
    """Mount securityfs at ``securityfs`` when its ``ima`` directory is missing."""
    try:
        os.stat(securityfs + "/ima")
        return
    except OSError:
        pass
    if libc.mount(libc.z("securityfs"), libc.z(securityfs), "securityfs", 0, None) != 0:
        raise PolicyError("%s/ima missing and securityfs cannot be mounted there: %s"
                          % (securityfs, libc.describe(libc.errno())))


def load(target, policy, policy_path, by_path):
    """Write the rules of ``policy`` (or ``policy_path``) to ``target``; return rules written."""
    if by_path:
        rules = [(0, policy_path.encode())]
    else:
        rules = policy_rules(policy)
    fd = libc.open_(libc.z(target), libc.O_WRONLY | libc.O_CLOEXEC, 0)
    if fd < 0:
        raise PolicyError("cannot open %s: %s" % (target, libc.describe(libc.errno())))
    failed = None
    try:
        for lineno, rule in rules:
            data = rule + b"\n"
            if libc.write(fd, data, len(data)) != len(data):
                e = libc.errno()
                if by_path:
                    failed = "the kernel refused to load the policy from %s: %s" % (
                        policy_path, libc.describe(e))
                else:
                    failed = "the kernel rejected IMA policy line %d (%s): %s" % (
                        lineno, rule.decode(), libc.describe(e))
                break
    finally:
        rc = libc.close(fd)
    if failed:
        raise PolicyError(failed)
    if rc != 0:
        raise PolicyError("the kernel rejected the IMA policy on close: %s"
                          % libc.describe(libc.errno()))
    return len(rules)
