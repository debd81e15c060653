"""The agent configuration: ``key=value`` lines, ``#`` comments (MicroPython and CPython).

Keys and defaults (lists are space-separated):

============== ============================================================
rootfs_mode    ``tree`` | ``identity`` | ``verity``            (tree)
include        paths to measure                  (/usr + stable /etc files)
exclude        exclude patterns (see shared_spec.manifest)   (none)
xattrs         recorded xattrs          (security.capability security.ima)
ima_policy     policy file inside the initrd, empty for none (empty)
ima_policy_load ``rules`` (write each rule) | ``path``         (rules)
roots          ``auto`` | ``tdx`` | ``tpm`` | ``tdx,tpm``      (auto)
tdx_rtmr       RTMR number extended (CC MR index = rtmr + 1)   (3)
tsm_dir        TSM measurement-register directory
               (/sys/devices/virtual/misc/tdx_guest/measurements)
tsm_register   register file name, ``{n}`` = RTMR number     (rtmr{n}:sha384)
tpm_pcr        PCR extended                                   (15)
tpm_device     TPM character device; /dev/tpm0 is tried next  (/dev/tpmrm0)
on_error       ``halt`` | ``continue``                         (halt)
log_dir        where logs and the manifest go                 (/run/cvmchain)
============== ============================================================
"""

DEFAULT_INCLUDE = (
    "/usr",
    "/etc/os-release",
    "/etc/fstab",
    "/etc/passwd",
    "/etc/group",
    "/etc/shells",
    "/etc/nsswitch.conf",
    "/etc/ld.so.conf",
    "/etc/default/grub",
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
