"""The agent configuration: ``key=value`` lines, ``#`` comments (MicroPython and CPython).

Keys and defaults (lists are space-separated):

============== ============================================================
rootfs_mode    ``tree`` | ``identity`` | ``verity``            (tree)
include        paths to measure          (/usr + stable /etc files, see below)
exclude        exclude patterns (see shared_spec.manifest)   (none)
xattrs         recorded xattrs          (security.capability security.ima)
ima_policy     policy file inside the initrd, empty for none (empty)
ima_policy_load ``rules`` (write each rule) | ``path``         (rules)
roots          ``auto`` | ``tdx`` | ``tpm`` | ``tdx,tpm``      (auto)
tdx_rtmr       RTMR number extended (CC MR index = rtmr + 1)   (3)
tsm_dir        TSM measurement-register directory
               (/sys/devices/virtual/misc/tdx_guest/measurements)
tsm_register   register file name, ``{n}`` = RTMR number     (rtmr{n}:sha384)
tdx_device     legacy TDX guest device (TDX_CMD_EXTEND_RTMR ioctl), used
               when the TSM register file is absent          (/dev/tdx_guest)
tpm_pcr        PCR extended                                   (15)
tpm_device     TPM character device; /dev/tpm0 is tried next  (/dev/tpmrm0)
on_error       ``halt`` | ``continue``                         (halt)
log_dir        where logs and the manifest go                 (/run/cvmchain)
============== ============================================================

The default ``include``: ``/usr`` and the files under ``/etc`` that a cloud
image's first boot leaves alone, so their manifest is predictable at image
build time and the same at every boot. Left out on purpose, because the
first boot rewrites them: ``/etc/passwd``, ``/etc/group``, ``/etc/shadow``
and ``/etc/sudoers.d`` (cloud-init creates the default user), ``/etc/fstab``
(cloud-init's ``mounts`` module adds swap and ephemeral disks),
``/etc/hostname`` and ``/etc/hosts``, ``/etc/machine-id``,
``/etc/systemd/system`` (systemd applies presets at first boot),
``/etc/ssh`` (host keys, cloud-init's sshd drop-ins), ``/etc/apt`` (mirror
selection) and ``/etc/resolv.conf``. An include path that does not exist is
recorded as absent (an ``x`` line), so one list serves every distribution.
"""

DEFAULT_INCLUDE = (
    "/usr",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/shells",
    "/etc/nsswitch.conf",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/pam.d",
    "/etc/security",
    "/etc/modprobe.d",
    "/etc/sudoers",
)

DEFAULTS = {
    "rootfs_mode": "tree",
    "include": " ".join(DEFAULT_INCLUDE),
    "exclude": "",
    "xattrs": "security.capability security.ima",
    "ima_policy": "",
    "ima_policy_load": "rules",
    "roots": "auto",
    "tdx_rtmr": "3",
    "tsm_dir": "/sys/devices/virtual/misc/tdx_guest/measurements",
    "tsm_register": "rtmr{n}:sha384",
    "tdx_device": "/dev/tdx_guest",
    "tpm_pcr": "15",
    "tpm_device": "/dev/tpmrm0",
    "on_error": "halt",
    "log_dir": "/run/cvmchain",
}

CHOICES = {
    "rootfs_mode": ("tree", "identity", "verity"),
    "ima_policy_load": ("rules", "path"),
    "roots": ("auto", "tdx", "tpm", "tdx,tpm", "tpm,tdx"),
    "on_error": ("halt", "continue"),
}


class ConfigError(Exception):
    """Bad configuration; the message names the line and key."""


def parse_config(text: str) -> dict:
    """Parse agent.conf text into a dict with every key (defaults filled in)."""
    conf = dict(DEFAULTS)
    seen = {}
    lineno = 0
    for line in text.split("\n"):
        lineno += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in stripped:
            raise ConfigError("line %d: expected key=value, got %r" % (lineno, stripped))
        key, _, value = stripped.partition("=")
        key = key.strip()
        value = value.strip()
        if key not in DEFAULTS:
            raise ConfigError("line %d: unknown key %r" % (lineno, key))
        if key in seen:
            raise ConfigError("line %d: %s given again (first on line %d)"
                              % (lineno, key, seen[key]))
        seen[key] = lineno
        choices = CHOICES.get(key)
        if choices is not None and value not in choices:
            raise ConfigError("line %d: %s=%s, expected one of %s"
                              % (lineno, key, value, ", ".join(choices)))
        if key in ("tdx_rtmr", "tpm_pcr"):
            try:
                n = int(value)
            except ValueError:
                raise ConfigError("line %d: %s must be a number" % (lineno, key)) from None
            if key == "tdx_rtmr" and not 0 <= n <= 3:
                raise ConfigError("line %d: tdx_rtmr must be 0..3" % lineno)
            if key == "tpm_pcr" and not 0 <= n <= 23:
                raise ConfigError("line %d: tpm_pcr must be 0..23" % lineno)
        conf[key] = value
    for path in conf["include"].split():
        if not path.startswith("/"):
            raise ConfigError("include path %r is not absolute" % path)
    if not conf["include"].split() and conf["rootfs_mode"] == "tree":
        raise ConfigError("include is empty: rootfs_mode=tree has nothing to measure")
    for key in ("tsm_dir", "tdx_device", "tpm_device", "log_dir"):
        if not conf[key].startswith("/"):
            raise ConfigError("%s=%s is not an absolute path" % (key, conf[key]))
    if conf["ima_policy"] and not conf["ima_policy"].startswith("/"):
        raise ConfigError("ima_policy=%s is not an absolute path" % conf["ima_policy"])
    if "/" in conf["tsm_register"] or not conf["tsm_register"]:
        raise ConfigError("tsm_register=%s must be a file name" % conf["tsm_register"])
    return conf


def render_config(values: dict) -> str:
    """Canonical agent.conf text for ``values`` (unknown keys rejected)."""
    lines = ["# cvmchain agent configuration (measured as the first event)"]
    for key in DEFAULTS:
        if key in values:
            lines.append("%s=%s" % (key, values[key]))
    for key in values:
        if key not in DEFAULTS:
            raise ConfigError("unknown key %r" % key)
    text = "\n".join(lines) + "\n"
    parse_config(text)
    return text
