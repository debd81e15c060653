"""IMA policies for the image rewriter: a host-side checker, presets and kernel arguments.

The checker follows the grammar of Linux 6.1 (``security/integrity/ima/ima_policy.c``,
``ima_parse_rule`` then ``ima_validate_rule``; ``Documentation/ABI/testing/ima_policy``) as
the Debian 6.1 kernel builds it, so a policy it accepts is one the kernel accepts when the
initrd agent writes it rule by rule to ``<securityfs>/ima/policy``:

- the file is split on ``\\n``; a line whose first non-blank character is ``#`` is a
  comment; blank lines are skipped; tokens are separated by spaces and tabs only (a
  ``\\r`` or another control character would be part of a token, so it is refused);
- a rule has exactly one action (``measure``, ``dont_measure``, ``appraise``,
  ``dont_appraise``, ``audit``, ``hash``, ``dont_hash``) and any number of
  ``key=value`` conditions and options, each given at most once (``uid``/``euid``
  share one slot in the kernel, and so do ``gid``/``egid``); ``uid``, ``euid``,
  ``gid``, ``egid``, ``fowner`` and ``fgroup`` also take ``<`` and ``>``;
- values are checked as the kernel parses them (hex ``fsmagic``, decimal ids that
  fit 32 bits, a UUID, ``pcr`` 0..63, known ``func``, ``mask``, template and hash names);
- order matters where the kernel makes it matter: ``template=`` only after the
  ``measure`` action, ``digest_type=`` before ``appraise_type=``;
- each ``func`` allows only the conditions ``ima_validate_rule`` allows with it.

Things the kernel accepts but that will not work at boot on Debian 6.1 under Secure Boot
(enforced appraisal without ``security.ima`` xattrs, signatures without keys, LSM labels
AppArmor does not provide, hash modules, PCR numbers) are :class:`PolicyWarning` objects
on the result, each with a stable ``code``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from image_rewriter.errors import ImaPolicyError

ACTIONS = ("measure", "dont_measure", "appraise", "dont_appraise", "audit", "hash", "dont_hash")

#: ``func=`` names the 6.1 parser accepts -> the hook they select (two are aliases).
FUNCS = {
    "FILE_CHECK": "FILE_CHECK", "PATH_CHECK": "FILE_CHECK",
    "MODULE_CHECK": "MODULE_CHECK", "FIRMWARE_CHECK": "FIRMWARE_CHECK",
    "FILE_MMAP": "MMAP_CHECK", "MMAP_CHECK": "MMAP_CHECK",
    "BPRM_CHECK": "BPRM_CHECK", "CREDS_CHECK": "CREDS_CHECK",
    "KEXEC_KERNEL_CHECK": "KEXEC_KERNEL_CHECK", "KEXEC_INITRAMFS_CHECK": "KEXEC_INITRAMFS_CHECK",
    "POLICY_CHECK": "POLICY_CHECK", "KEXEC_CMDLINE": "KEXEC_CMDLINE",
    "KEY_CHECK": "KEY_CHECK", "CRITICAL_DATA": "CRITICAL_DATA",
    "SETXATTR_CHECK": "SETXATTR_CHECK",
}
MASKS = ("MAY_EXEC", "MAY_WRITE", "MAY_READ", "MAY_APPEND")

#: The kernel's built-in templates (``ima_template.c``): name -> field format.
TEMPLATES = {
    "ima": "d|n",
    "ima-ng": "d-ng|n-ng",
    "ima-sig": "d-ng|n-ng|sig",
    "ima-ngv2": "d-ngv2|n-ng",
    "ima-sigv2": "d-ngv2|n-ng|sig",
    "ima-buf": "d-ng|n-ng|buf",
    "ima-modsig": "d-ng|n-ng|sig|d-modsig|modsig",
    "evm-sig": "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode",
}

#: ``hash_algo_name`` (``crypto/hash_info.c``): what ``appraise_algos=`` and ``ima_hash=`` name.
HASH_ALGOS = ("md4", "md5", "sha1", "rmd160", "sha256", "sha384", "sha512", "sha224", "rmd128",
              "rmd256", "rmd320", "wp256", "wp384", "wp512", "tgr128", "tgr160", "tgr192", "sm3",
              "streebog256", "streebog512")

#: The pseudo file systems the kernel's built-in policies never measure (``dont_measure_rules``).
PSEUDO_FS_MAGICS = (
    ("PROC_SUPER_MAGIC", 0x9FA0), ("SYSFS_MAGIC", 0x62656572), ("DEBUGFS_MAGIC", 0x64626720),
    ("TMPFS_MAGIC", 0x01021994), ("DEVPTS_SUPER_MAGIC", 0x1CD1),
    ("BINFMTFS_MAGIC", 0x42494E4D), ("SECURITYFS_MAGIC", 0x73636673),
    ("SELINUX_MAGIC", 0xF97CFF8C), ("SMACK_MAGIC", 0x43415D53),
    ("CGROUP_SUPER_MAGIC", 0x27E0EB), ("CGROUP2_SUPER_MAGIC", 0x63677270),
    ("NSFS_MAGIC", 0x6E736673), ("EFIVARFS_MAGIC", 0xDE5E81E4),
)

LSM_KEYS = ("obj_user", "obj_role", "obj_type", "subj_user", "subj_role", "subj_type")
ID_KEYS = ("uid", "euid", "gid", "egid", "fowner", "fgroup")
#: Keys that are options rather than conditions (the ABI document's split).
OPTION_KEYS = ("digest_type", "template", "permit_directio", "appraise_type", "appraise_flag",
               "appraise_algos", "pcr")
_VALUE_KEYS = (*LSM_KEYS, "func", "mask", "fsmagic", "fsname", "fsuuid", "digest_type",
               "appraise_type", "appraise_flag", "appraise_algos", "pcr", "template", "keyrings",
               "label")

#: ``write(2)`` to the policy file takes at most PAGE_SIZE - 1 bytes (``ima_write_policy``).
MAX_RULE_BYTES = 4094
#: ``measured_pcrs`` is an unsigned long: the parser takes pcr 0..63.
MAX_PCR = 63
TPM_PCRS = 24

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DEC = re.compile(r"^\+?[0-9]+$")
_HEX = re.compile(r"^\+?(0[xX])?[0-9a-fA-F]+$")
_SIGNED_DEC = re.compile(r"^[+-]?[0-9]+$")

# Kernel rule flags (ima_policy.c), by the name used here.
_FILE_FLAGS = frozenset({"func", "mask", "inmask", "fsmagic", "uid", "fowner", "fsuuid", "euid",
                         "pcr", "fsname", "gid", "egid", "fgroup", "digsig", "permit_directio",
                         "algos", "verity"})
_READ_FLAGS = (_FILE_FLAGS - {"verity"}) | {"modsig", "blacklist"}
_CMDLINE_FLAGS = frozenset({"func", "fsmagic", "uid", "fowner", "fsuuid", "euid", "pcr",
                            "fsname", "gid", "egid", "fgroup"})
_ALLOWED_FLAGS = {
    None: _FILE_FLAGS, "FILE_CHECK": _FILE_FLAGS, "MMAP_CHECK": _FILE_FLAGS,
    "BPRM_CHECK": _FILE_FLAGS, "CREDS_CHECK": _FILE_FLAGS, "FIRMWARE_CHECK": _FILE_FLAGS,
    "POLICY_CHECK": _FILE_FLAGS,
    "MODULE_CHECK": _READ_FLAGS, "KEXEC_KERNEL_CHECK": _READ_FLAGS,
    "KEXEC_INITRAMFS_CHECK": _READ_FLAGS,
    "KEXEC_CMDLINE": _CMDLINE_FLAGS,
    "KEY_CHECK": frozenset({"func", "uid", "gid", "pcr", "keyrings"}),
    "CRITICAL_DATA": frozenset({"func", "uid", "gid", "pcr", "label"}),
    "SETXATTR_CHECK": frozenset({"func", "algos"}),
}
_MEASURE_ONLY_FUNCS = ("KEXEC_CMDLINE", "KEY_CHECK", "CRITICAL_DATA")
_APPRAISE_ONLY_FLAGS = ("digsig", "modsig", "blacklist", "algos")


@dataclass(frozen=True)
class KernelProfile:
    """What the target kernel's configuration changes in the grammar and at boot."""

    name: str
    #: CONFIG_IMA_APPRAISE_MODSIG: ``appraise_type=imasig|modsig``, ``appraise_flag=``.
    modsig: bool
    #: CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS: ``func=KEY_CHECK``, ``keyrings=``.
    asymmetric_keys: bool
    #: Hash algorithms built into the kernel (the rest are modules or absent).
    builtin_hashes: frozenset[str]
    #: UEFI Secure Boot on: lockdown, appraisal enforced (``ima_appraise=`` ignored).
    secure_boot: bool
    #: Keys on the ``.ima`` keyring at boot (CONFIG_IMA_LOAD_X509 or similar).
    ima_keys: bool
    #: The LSM that answers ``subj_*`` / ``obj_*`` conditions.
    lsm: str
    default_template: str
    default_hash: str


#: Debian 12's 6.1 kernels (``linux-image-6.1.0-*-{amd64,cloud-amd64}``, read from
#: ``/boot/config-6.1.0-*``) booted with Secure Boot, as cvmchain's guests are.
DEBIAN_6_1 = KernelProfile(
    name="Debian 6.1 (Secure Boot)", modsig=False, asymmetric_keys=True,
    builtin_hashes=frozenset({"md5", "sha1", "sha224", "sha256"}), secure_boot=True,
    ima_keys=False, lsm="apparmor", default_template="ima-sig", default_hash="sha256")


class Term(NamedTuple):
    """One token of a rule after the action: ``key``, ``op`` (``=``, ``<``, ``>`` or ``""``
    for ``permit_directio``) and ``value`` (``""`` for ``permit_directio``)."""

    key: str
    op: str
    value: str

    def render(self) -> str:
        return self.key + self.op + self.value


@dataclass(frozen=True)
class ImaRule:
    """One policy rule: its action and its other tokens in the order given."""

    action: str
    terms: tuple[Term, ...]
    #: 1-based line in the source (0 for a rule built in code).
    line: int = 0

    @property
    def conditions(self) -> tuple[Term, ...]:
        """The tokens that select what the rule applies to (func=, mask=, uid=, ...)."""
        return tuple(t for t in self.terms if t.key not in OPTION_KEYS)

    @property
    def options(self) -> tuple[Term, ...]:
        """The tokens that say how (template=, pcr=, appraise_type=, ...)."""
        return tuple(t for t in self.terms if t.key in OPTION_KEYS)

    def get(self, key: str) -> str | None:
        """The value of the first term named ``key``, or None."""
        for t in self.terms:
            if t.key == key:
                return t.value
        return None

    @property
    def func(self) -> str | None:
        """The hook the rule selects (aliases resolved), or None."""
        f = self.get("func")
        return FUNCS.get(f) if f is not None else None

    def render(self) -> str:
        """The rule as one line: the action, then the terms in their order."""
        return " ".join([self.action, *(t.render() for t in self.terms)])


@dataclass(frozen=True)
class PolicyWarning:
    """Something the kernel accepts but that will misbehave at boot; ``code`` is stable."""

    code: str
    line: int | None
    token: str | None
    message: str

    def __str__(self) -> str:
        where = "line %d: " % self.line if self.line is not None else ""
        tok = " (token %r)" % self.token if self.token is not None else ""
        return "%s%s%s [%s]" % (where, self.message, tok, self.code)


@dataclass
class CheckedPolicy:
    """A policy that passed :func:`check_policy`: its rules and warnings."""

    source: str
    data: bytes
    rules: list[ImaRule]
    warnings: list[PolicyWarning] = field(default_factory=list)
    profile: KernelProfile = DEBIAN_6_1

    @property
    def sha384(self) -> str:
        """Hex SHA-384 of the exact bytes (what the agent's ima-policy event names)."""
        return hashlib.sha384(self.data).hexdigest()

    @property
    def templates(self) -> list[str]:
        """The ``template=`` names the rules use, in first-use order."""
        out: list[str] = []
        for r in self.rules:
            t = r.get("template")
            if t is not None and t not in out:
                out.append(t)
        return out

    def render(self) -> str:
        """The rules alone, one per line (comments and spacing dropped)."""
        return "".join(r.render() + "\n" for r in self.rules)


class _Fail(Exception):
    def __init__(self, token: str | None, column: int | None, reason: str) -> None:
        super().__init__(reason)
        self.token = token
        self.column = column
        self.reason = reason


def _split_token(tok: str) -> Term | None:
    """The kernel's ``match_token`` over ``policy_tokens``: None when nothing matches."""
    if tok in ACTIONS:
        return Term(tok, "", "")
    if tok == "permit_directio":
        return Term(tok, "", "")
    for key in _VALUE_KEYS:
        if tok.startswith(key + "=") and len(tok) > len(key) + 1:
            return Term(key, "=", tok[len(key) + 1:])
    for op in ("=", ">", "<"):
        for key in ID_KEYS:
            if tok.startswith(key + op) and len(tok) > len(key) + 1:
                return Term(key, op, tok[len(key) + 1:])
    return None


def _kstrtoul(value: str, hexa: bool) -> int | None:
    if not (_HEX if hexa else _DEC).match(value):
        return None
    v = value.lstrip("+")
    n = int(v, 16) if hexa else int(v, 10)
    return n if n < 1 << 64 else None


class _Entry:
    """The kernel's ``struct ima_rule_entry`` while one rule is parsed."""

    def __init__(self) -> None:
        self.action: str | None = None
        self.func: str | None = None
        self.flags: dict[str, tuple[str, int]] = {}
        self.slots: set[str] = set()


def _opt_list(value: str, what: str, tok: str, col: int) -> None:
    if any(not item for item in value.split("|")):
        raise _Fail(tok, col, "empty item in the %s list" % what)


def _parse_term(e: _Entry, term: Term, tok: str, col: int, profile: KernelProfile,
                warn: list[tuple[str, str, str]]) -> None:
    key, value = term.key, term.value

    def flag(name: str) -> None:
        e.flags.setdefault(name, (tok, col))

    def once(slot: str, reason: str) -> None:
        if slot in e.slots:
            raise _Fail(tok, col, reason)
        e.slots.add(slot)

    if key in ACTIONS:
        if e.action is not None:
            raise _Fail(tok, col, "a second action (the rule already has %r)" % e.action)
        e.action = key
    elif key == "func":
        if e.func is not None:
            raise _Fail(tok, col, "func= given twice")
        func = FUNCS.get(value)
        if func is None:
            raise _Fail(tok, col, "unknown func %r (one of: %s)"
                        % (value, ", ".join(sorted(FUNCS))))
        if func == "KEY_CHECK" and not profile.asymmetric_keys:
            raise _Fail(tok, col, "func=KEY_CHECK needs CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS")
        e.func = func
        flag("func")
    elif key == "mask":
        once("mask", "mask= given twice")
        if value.lstrip("^") not in MASKS or value.startswith("^^"):
            raise _Fail(tok, col, "unknown mask %r (one of: %s, each optionally with a "
                        "leading ^)" % (value, ", ".join(MASKS)))
        flag("inmask" if value.startswith("^") else "mask")
    elif key == "fsmagic":
        once("fsmagic", "fsmagic= given twice")
        if _kstrtoul(value, True) is None:
            raise _Fail(tok, col, "fsmagic must be a hexadecimal number that fits 64 bits")
        flag("fsmagic")
    elif key == "fsname":
        if "fsname" in e.flags:
            warn.append(("duplicate-ignored", tok, "fsname= given twice: the kernel keeps "
                                                   "the last one"))
        flag("fsname")
    elif key == "keyrings":
        if not profile.asymmetric_keys:
            raise _Fail(tok, col, "keyrings= needs CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS")
        once("keyrings", "keyrings= given twice")
        _opt_list(value, "keyrings", tok, col)
        flag("keyrings")
    elif key == "label":
        once("label", "label= given twice")
        _opt_list(value, "label", tok, col)
        flag("label")
    elif key == "fsuuid":
        once("fsuuid", "fsuuid= given twice")
        if not _UUID.match(value):
            raise _Fail(tok, col, "fsuuid must be a UUID like "
                        "8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6")
        flag("fsuuid")
    elif key in ID_KEYS:
        slot = {"euid": "uid", "egid": "gid"}.get(key, key)
        once(slot, "%s given twice" % (key + "=") if slot == key else
             "%s= and e%s= share one value in the kernel: only one of them per rule"
             % (slot, slot))
        n = _kstrtoul(value, False)
        if n is None or n >= 0xFFFFFFFF:
            raise _Fail(tok, col, "%s must be a decimal id below 4294967295" % key)
        flag(key)
    elif key in LSM_KEYS:
        once(key, "%s= given twice" % key)
        warn.append(("lsm-condition", tok,
                     "LSM condition: the kernel accepts it, but the active LSM (%s on this "
                     "kernel) must know the label, or the rule never matches" % profile.lsm))
    elif key == "digest_type":
        if "digsig" in e.flags:
            raise _Fail(tok, col, "digest_type= must come before appraise_type=")
        if value != "verity":
            raise _Fail(tok, col, "digest_type must be 'verity'")
        flag("verity")
    elif key == "appraise_type":
        if value == "imasig":
            if "verity" in e.flags:
                raise _Fail(tok, col, "digest_type=verity needs appraise_type=sigv3")
            flag("digsig")
        elif value == "sigv3":
            if "verity" not in e.flags:
                raise _Fail(tok, col, "appraise_type=sigv3 needs digest_type=verity before it")
            flag("digsig")
        elif value == "imasig|modsig":
            if not profile.modsig:
                raise _Fail(tok, col, "appraise_type=imasig|modsig needs "
                            "CONFIG_IMA_APPRAISE_MODSIG, which %s does not set" % profile.name)
            if "verity" in e.flags:
                raise _Fail(tok, col, "digest_type=verity needs appraise_type=sigv3")
            flag("digsig")
            flag("modsig")
        else:
            raise _Fail(tok, col, "appraise_type must be imasig, sigv3 or imasig|modsig")
    elif key == "appraise_flag":
        if not profile.modsig:
            raise _Fail(tok, col, "appraise_flag= needs CONFIG_IMA_APPRAISE_MODSIG, which %s "
                        "does not set" % profile.name)
        if "blacklist" not in value:
            raise _Fail(tok, col, "appraise_flag must be check_blacklist")
        flag("blacklist")
    elif key == "appraise_algos":
        once("appraise_algos", "appraise_algos= given twice")
        for name in value.split(","):
            if name not in HASH_ALGOS:
                raise _Fail(tok, col, "unknown hash algorithm %r in appraise_algos" % name)
            if name not in profile.builtin_hashes:
                warn.append(("hash-module", tok,
                             "%s is not built into %s: the kernel rejects the rule unless "
                             "its module can be loaded when the policy is written"
                             % (name, profile.name)))
        flag("algos")
    elif key == "permit_directio":
        flag("permit_directio")
    elif key == "pcr":
        if not _SIGNED_DEC.match(value) or not 0 <= int(value) <= MAX_PCR:
            raise _Fail(tok, col, "pcr must be a decimal number 0..%d" % MAX_PCR)
        if "pcr" in e.flags:
            warn.append(("duplicate-ignored", tok, "pcr= given twice: the kernel keeps the "
                                                   "last one"))
        if int(value) >= TPM_PCRS:
            warn.append(("pcr-range", tok, "a TPM 2.0 has PCRs 0..23: extending PCR %s fails "
                                           "(the measurement is logged, no PCR holds it)"
                         % value))
        flag("pcr")
    elif key == "template":
        if e.action != "measure":
            raise _Fail(tok, col, "template= is only valid after the measure action")
        once("template", "template= given twice")
        if value not in TEMPLATES:
            raise _Fail(tok, col, "unknown template %r (one of: %s)"
                        % (value, ", ".join(TEMPLATES)))
    else:  # pragma: no cover - _split_token only returns known keys
        raise _Fail(tok, col, "unknown keyword")


def _validate(e: _Entry, first: tuple[str, int]) -> None:
    """``ima_validate_rule``: the action and the func against the other flags."""
    if e.action is None:
        raise _Fail(first[0], first[1], "no action (one of: %s)" % ", ".join(ACTIONS))
    if e.action != "measure" and "pcr" in e.flags:
        tok, col = e.flags["pcr"]
        raise _Fail(tok, col, "pcr= is only valid with measure")
    if e.action != "appraise":
        for f in _APPRAISE_ONLY_FLAGS:
            if f in e.flags:
                tok, col = e.flags[f]
                raise _Fail(tok, col, "only valid with appraise, not %s" % e.action)
    func_tok = e.flags.get("func", first)
    if e.func in _MEASURE_ONLY_FUNCS and e.action not in ("measure", "dont_measure"):
        raise _Fail(func_tok[0], func_tok[1], "func=%s allows only measure and dont_measure"
                    % e.func)
    if e.func == "SETXATTR_CHECK":
        if e.action != "appraise":
            raise _Fail(func_tok[0], func_tok[1], "func=SETXATTR_CHECK allows only appraise")
        if "algos" not in e.flags:
            raise _Fail(func_tok[0], func_tok[1], "func=SETXATTR_CHECK needs appraise_algos=")
    allowed = _ALLOWED_FLAGS[e.func]
    for f, (tok, col) in sorted(e.flags.items(), key=lambda kv: kv[1][1]):
        if f not in allowed:
            with_ = "func=%s" % e.func if e.func else "a rule without func="
            raise _Fail(tok, col, "not allowed with %s" % with_)
    if e.func in ("KEY_CHECK", "CRITICAL_DATA") and e.slots & set(LSM_KEYS):
        raise _Fail(func_tok[0], func_tok[1], "func=%s allows no LSM condition" % e.func)
    if "blacklist" in e.flags and "modsig" not in e.flags:
        tok, col = e.flags["blacklist"]
        raise _Fail(tok, col, "appraise_flag=check_blacklist needs appraise_type=imasig|modsig")
    if e.action == "appraise" and "verity" in e.flags and "digsig" not in e.flags:
        tok, col = e.flags["verity"]
        raise _Fail(tok, col, "an appraise rule with digest_type=verity needs "
                    "appraise_type=sigv3")


def _boot_warnings(rule: ImaRule, e: _Entry, profile: KernelProfile, agent_pcr: int | None,
                   warn: list[tuple[str, str, str]]) -> None:
    first = rule.action
    if rule.action == "appraise" and e.func != "SETXATTR_CHECK":
        if "digsig" in e.flags:
            if not profile.ima_keys:
                warn.append(("appraise-no-keys", first,
                             "appraisal needs file signatures by a key on the .ima keyring, "
                             "and %s loads none at boot: every file this rule matches will "
                             "be refused" % profile.name))
        elif profile.secure_boot:
            warn.append(("appraise-enforced", first,
                         "under Secure Boot the kernel enforces appraisal (ima_appraise= is "
                         "ignored): files this rule matches need a valid security.ima "
                         "xattr, which Debian images do not carry, or they fail to open"))
    pcr = rule.get("pcr")
    if agent_pcr is not None and pcr is not None and int(pcr) == agent_pcr:
        warn.append(("pcr-agent", "pcr=" + pcr,
                     "IMA would extend PCR %d, the register the cvmchain agent extends: its "
                     "value would no longer equal the reference's prediction" % agent_pcr))


def _line_tokens(line: str) -> list[tuple[str, int]]:
    out = []
    for m in re.finditer(r"[^ \t]+", line):
        out.append((m.group(0), m.start() + 1))
    return out


def check_policy(data: bytes | str, source: str = "<policy>",
                 profile: KernelProfile = DEBIAN_6_1,
                 agent_pcr: int | None = 15) -> CheckedPolicy:
    """Check a policy as the kernel would parse it; return its rules and warnings.

    ``source`` names the policy in messages; ``agent_pcr`` is the PCR the agent extends
    (an IMA rule extending it is warned about; None to skip).

    Raises:
        ImaPolicyError: with the line, column and token the kernel would reject.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    rules: list[ImaRule] = []
    warnings: list[PolicyWarning] = []
    for lineno, braw in enumerate(raw.split(b"\n"), 1):
        try:
            line = braw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImaPolicyError(source, lineno, exc.start + 1, None,
                                 "not UTF-8 text (byte 0x%02x)" % braw[exc.start]) from None
        body = line.lstrip(" \t")
        if not body or body.startswith("#"):
            continue
        for i, ch in enumerate(line):
            if ch != "\t" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
                tok = next(t for t, c in _line_tokens(line) if c <= i + 1 < c + len(t))
                name = {"\r": "a carriage return (CRLF line ending?)", "\0": "a NUL byte"}.get(
                    ch, "control character 0x%02x" % ord(ch))
                raise ImaPolicyError(source, lineno, i + 1, tok,
                                     "%s: the kernel splits tokens on spaces and tabs only"
                                     % name)
        if len(braw) > MAX_RULE_BYTES:
            raise ImaPolicyError(source, lineno, None, None,
                                 "rule of %d bytes: the kernel takes at most %d per write"
                                 % (len(braw), MAX_RULE_BYTES))
        rules.append(_check_line(line, lineno, source, profile, agent_pcr, warnings))
    if not rules:
        warnings.append(PolicyWarning("empty-policy", None, None,
                                      "no rules: the kernel refuses an empty policy when the "
                                      "file is closed and keeps its boot-time policy"))
    return CheckedPolicy(source, raw, rules, warnings, profile)


def _check_line(line: str, lineno: int, source: str, profile: KernelProfile,
                agent_pcr: int | None, warnings: list[PolicyWarning]) -> ImaRule:
    e = _Entry()
    warn: list[tuple[str, str, str]] = []
    toks = _line_tokens(line)
    action = None
    terms: list[Term] = []
    try:
        for tok, col in toks:
            term = _split_token(tok)
            if term is None:
                key = re.split(r"[=<>]", tok, maxsplit=1)[0]
                if tok.startswith("#"):
                    reason = "a comment must start its own line"
                elif key in _VALUE_KEYS or key in ID_KEYS:
                    reason = "%s needs a value" % key
                else:
                    reason = "unknown keyword"
                raise _Fail(tok, col, reason)
            _parse_term(e, term, tok, col, profile, warn)
            if term.key in ACTIONS:
                action = term.key
            else:
                terms.append(term)
        _validate(e, toks[0])
    except _Fail as f:
        raise ImaPolicyError(source, lineno, f.column, f.token, f.reason) from None
    assert action is not None
    rule = ImaRule(action, tuple(terms), lineno)
    _boot_warnings(rule, e, profile, agent_pcr, warn)
    warnings.extend(PolicyWarning(code, lineno, tok, msg) for code, tok, msg in warn)
    return rule


def parse_rule(text: str, profile: KernelProfile = DEBIAN_6_1) -> ImaRule:
    """One rule line checked on its own (raises :class:`ImaPolicyError`)."""
    checked = check_policy(text, "<rule>", profile, None)
    if len(checked.rules) != 1:
        raise ImaPolicyError("<rule>", None, None, None, "expected exactly one rule")
    return checked.rules[0]


# --- presets -------------------------------------------------------------------------------


def _pseudo_fs_lines() -> str:
    return "".join("# %s\ndont_measure fsmagic=0x%x\n" % (name, magic)
                   for name, magic in PSEUDO_FS_MAGICS)


_EXEC_MODULES = (
    "# cvmchain preset exec-modules: measure the code that runs and the kernel's inputs.\n"
    "# Pseudo file systems are skipped, as in the kernel's built-in policies.\n"
    + _pseudo_fs_lines()
    + "# executables at execve()\n"
    "measure func=BPRM_CHECK mask=MAY_EXEC\n"
    "# shared libraries and other code mapped executable\n"
    "measure func=MMAP_CHECK mask=MAY_EXEC\n"
    "# kernel modules, firmware, kexec kernels and initramfs, IMA policy files\n"
    "measure func=MODULE_CHECK\n"
    "measure func=FIRMWARE_CHECK\n"
    "measure func=KEXEC_KERNEL_CHECK\n"
    "measure func=KEXEC_INITRAMFS_CHECK\n"
    "measure func=POLICY_CHECK\n"
)

_TCB = (
    "# cvmchain preset tcb: the kernel's built-in ima_policy=tcb written out as rules\n"
    "# (Linux 6.1 ima_policy.c: dont_measure_rules, then default_measurement_rules).\n"
    + _pseudo_fs_lines()
    + "measure func=MMAP_CHECK mask=MAY_EXEC\n"
    "measure func=BPRM_CHECK mask=MAY_EXEC\n"
    "# every file opened for reading by root (effective or real uid 0)\n"
    "measure func=FILE_CHECK mask=^MAY_READ euid=0\n"
    "measure func=FILE_CHECK mask=^MAY_READ uid=0\n"
    "measure func=MODULE_CHECK\n"
    "measure func=FIRMWARE_CHECK\n"
    "measure func=POLICY_CHECK\n"
)

_NONE = (
    "# cvmchain preset none: no rules. The rewriter installs no policy file, the agent\n"
    "# measures that there is none, and the kernel keeps its boot-time policy.\n"
)

#: name -> (one-line description, policy text)
PRESETS: dict[str, tuple[str, str]] = {
    "exec-modules": ("executables, executable mmaps, modules, firmware, kexec images and "
                     "policy files", _EXEC_MODULES),
    "tcb": ("what ima_policy=tcb measures: the above plus every file root reads",
            _TCB),
    "none": ("no IMA policy", _NONE),
}


def preset_names() -> list[str]:
    """The preset names, in the order shown to users."""
    return list(PRESETS)


def preset(name: str) -> str:
    """The policy text of preset ``name`` (raises :class:`ImaPolicyError` if unknown)."""
    try:
        return PRESETS[name][1]
    except KeyError:
        raise ImaPolicyError("preset " + name, None, None, None,
                             "unknown IMA policy preset (known: %s)"
                             % ", ".join(PRESETS)) from None


# --- kernel arguments -----------------------------------------------------------------------


def kernel_cmdline_for(policy: CheckedPolicy | None, template: str = "ima-ng",
                       hash_alg: str = "sha256",
                       profile: KernelProfile | None = None) -> list[str]:
    """The kernel arguments the rewriter adds for ``policy``: ``ima_template=`` and
    ``ima_hash=``.

    Warnings about the arguments (a hash the kernel has only as a module, which makes IMA
    fall back to its default) are appended to ``policy.warnings``.

    Raises:
        ImaPolicyError: an unknown template or hash, the ``ima`` template with a hash
            other than sha1/md5 (the kernel would ignore the argument), or a rule using a
            template the kernel does not define.
    """
    prof = profile or (policy.profile if policy is not None else DEBIAN_6_1)
    where = "kernel arguments"
    if template not in TEMPLATES:
        raise ImaPolicyError(where, None, None, "ima_template=" + template,
                             "unknown IMA template (one of: %s)" % ", ".join(TEMPLATES))
    if hash_alg not in HASH_ALGOS:
        raise ImaPolicyError(where, None, None, "ima_hash=" + hash_alg,
                             "unknown hash algorithm (one of: %s)" % ", ".join(HASH_ALGOS))
    if template == "ima" and hash_alg not in ("sha1", "md5"):
        raise ImaPolicyError(where, None, None, "ima_template=ima",
                             "the 'ima' template holds only sha1 or md5 digests: the kernel "
                             "ignores ima_template=ima with ima_hash=%s" % hash_alg)
    if policy is not None:
        for rule in policy.rules:
            t = rule.get("template")
            if t is not None and t not in TEMPLATES:
                raise ImaPolicyError(policy.source, rule.line, None, "template=" + t,
                                     "unknown IMA template")
        if hash_alg not in prof.builtin_hashes:
            policy.warnings.append(PolicyWarning(
                "hash-module", None, "ima_hash=" + hash_alg,
                "%s is a module in %s: IMA starts before modules can load and falls back "
                "to %s, so measured digests would not be %s"
                % (hash_alg, prof.name, prof.default_hash, hash_alg)))
    return ["ima_template=" + template, "ima_hash=" + hash_alg]


def describe_presets() -> Iterable[tuple[str, str]]:
    """(name, description) of every preset."""
    return [(name, desc) for name, (desc, _text) in PRESETS.items()]
