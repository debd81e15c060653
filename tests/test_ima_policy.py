"""The IMA policy checker against the Linux 6.1 grammar, the presets and the kernel arguments.

Expected values come from the kernel sources of Debian's linux 6.1.192
(``security/integrity/ima/ima_policy.c``, ``include/uapi/linux/magic.h``,
``Documentation/ABI/testing/ima_policy``), written out here by hand.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image_rewriter import ima_policy as ip
from image_rewriter.errors import ImaPolicyError, RewriteError

#: The profile with every optional kernel feature on (for rules Debian's config rejects).
FULL = dataclasses.replace(ip.DEBIAN_6_1, name="full", modsig=True,
                           builtin_hashes=frozenset(ip.HASH_ALGOS), secure_boot=False,
                           ima_keys=True)

# Every example rule of Documentation/ABI/testing/ima_policy (6.1) that 6.1's parser accepts.
ABI_EXAMPLES = """\
dont_measure fsmagic=0x9fa0
dont_appraise fsmagic=0x9fa0
dont_measure fsmagic=0x62656572
dont_appraise fsmagic=0x62656572
dont_measure fsmagic=0x64626720
dont_appraise fsmagic=0x64626720
dont_measure fsmagic=0x01021994
dont_appraise fsmagic=0x01021994
dont_appraise fsmagic=0x858458f6
dont_measure fsmagic=0x1cd1
dont_appraise fsmagic=0x1cd1
dont_measure fsmagic=0x42494e4d
dont_appraise fsmagic=0x42494e4d
dont_measure fsmagic=0x73636673
dont_appraise fsmagic=0x73636673
dont_measure fsmagic=0xf97cff8c
dont_appraise fsmagic=0xf97cff8c
dont_measure fsmagic=0x27e0eb
dont_appraise fsmagic=0x27e0eb
dont_measure fsmagic=0x6e736673
dont_appraise fsmagic=0x6e736673
measure func=BPRM_CHECK
measure func=FILE_MMAP mask=MAY_EXEC
measure func=FILE_CHECK mask=MAY_READ uid=0
measure func=MODULE_CHECK
measure func=FIRMWARE_CHECK
appraise fowner=0
dont_measure obj_type=var_log_t
dont_appraise obj_type=var_log_t
dont_measure obj_type=auditd_log_t
dont_appraise obj_type=auditd_log_t
measure subj_user=system_u func=FILE_CHECK mask=MAY_READ
measure subj_role=system_r func=FILE_CHECK mask=MAY_READ
measure subj_user=_ func=FILE_CHECK mask=MAY_READ
measure func=KEXEC_KERNEL_CHECK pcr=4
measure func=KEXEC_INITRAMFS_CHECK pcr=5
measure func=KEY_CHECK
measure func=KEY_CHECK keyrings=.builtin_trusted_keys|.ima
appraise func=SETXATTR_CHECK appraise_algos=sha256,sha384,sha512
measure func=FILE_CHECK digest_type=verity template=ima-ngv2
appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3
"""

# More valid rules exercising the rest of the grammar.
MORE_VALID = """\
measure func=FILE_CHECK mask=^MAY_READ euid=0
measure func=FILE_CHECK mask=^MAY_WRITE uid>999 fowner<1000 gid=0 fgroup>10
measure func=MMAP_CHECK mask=MAY_EXEC fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6
measure func=BPRM_CHECK fsname=ext4 template=ima-sig pcr=11
measure func=CRITICAL_DATA label=selinux|kernel_info
measure func=KEXEC_CMDLINE pcr=12
audit func=BPRM_CHECK
hash func=FILE_CHECK
dont_hash fsmagic=0x01021994
appraise func=MODULE_CHECK appraise_type=imasig appraise_algos=sha256
appraise func=FILE_CHECK fowner=0 permit_directio
measure func=PATH_CHECK egid<100
measure func=CREDS_CHECK
measure\tfunc=POLICY_CHECK\t
"""


def rules_of(text: str, profile: ip.KernelProfile = ip.DEBIAN_6_1) -> list[ip.ImaRule]:
    return ip.check_policy(text.encode(), "test.policy", profile).rules


def test_abi_examples_parse() -> None:
    lines = ABI_EXAMPLES.splitlines()
    checked = ip.check_policy(ABI_EXAMPLES.encode(), "abi")
    assert [r.render() for r in checked.rules] == lines
    assert [r.line for r in checked.rules] == list(range(1, len(lines) + 1))
    rule = checked.rules[lines.index("measure func=FILE_CHECK mask=MAY_READ uid=0")]
    assert rule.action == "measure"
    assert rule.conditions == (ip.Term("func", "=", "FILE_CHECK"), ip.Term("mask", "=", "MAY_READ"),
                               ip.Term("uid", "=", "0"))
    assert rule.func == "FILE_CHECK"
    aliased = checked.rules[lines.index("measure func=FILE_MMAP mask=MAY_EXEC")]
    assert aliased.func == "MMAP_CHECK"
    verity = checked.rules[lines.index("measure func=FILE_CHECK digest_type=verity "
                                       "template=ima-ngv2")]
    assert verity.options == (ip.Term("digest_type", "=", "verity"),
                              ip.Term("template", "=", "ima-ngv2"))
    codes = {(w.line, w.code) for w in checked.warnings}
    assert (lines.index("appraise fowner=0") + 1, "appraise-enforced") in codes
    assert (lines.index("dont_measure obj_type=var_log_t") + 1, "lsm-condition") in codes
    sigv3 = lines.index("appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3") + 1
    assert (sigv3, "appraise-no-keys") in codes
    setxattr = lines.index("appraise func=SETXATTR_CHECK appraise_algos=sha256,sha384,sha512")
    assert (setxattr + 1, "hash-module") in codes  # sha384/sha512 are modules in Debian
    assert not any(w.code.startswith("appraise") and w.line == setxattr + 1
                   for w in checked.warnings)


def test_more_valid_rules() -> None:
    rules = rules_of(MORE_VALID)
    assert len(rules) == len(MORE_VALID.splitlines())
    assert rules[1].conditions[2] == ip.Term("uid", ">", "999")
    assert rules[1].conditions[3] == ip.Term("fowner", "<", "1000")
    assert rules[10].terms[-1] == ip.Term("permit_directio", "", "")
    assert rules[-1].render() == "measure func=POLICY_CHECK"


def test_modsig_rules_need_the_config() -> None:
    text = "appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig|modsig\n"
    assert rules_of(text, FULL)[0].get("appraise_type") == "imasig|modsig"
    with pytest.raises(ImaPolicyError, match="CONFIG_IMA_APPRAISE_MODSIG") as ei:
        rules_of(text)
    assert (ei.value.line, ei.value.token) == (1, "appraise_type=imasig|modsig")
    flag = "appraise func=MODULE_CHECK appraise_type=imasig|modsig appraise_flag=check_blacklist"
    assert len(rules_of(flag, FULL)) == 1


# (rule, column of the bad token, bad token, words of the reason)
INVALID = [
    ("measure func=FOO", 9, "func=FOO", "unknown func"),
    ("measure func=BPRM_CHECK func=FILE_CHECK", 25, "func=FILE_CHECK", "twice"),
    ("measure dont_measure", 9, "dont_measure", "second action"),
    ("func=BPRM_CHECK", 1, "func=BPRM_CHECK", "no action"),
    ("measure mask=MAY_RUN", 9, "mask=MAY_RUN", "unknown mask"),
    ("measure mask=", 9, "mask=", "needs a value"),
    ("measure fsmagic=0xzz", 9, "fsmagic=0xzz", "hexadecimal"),
    ("measure fsmagic=0x10000000000000000", 9, "fsmagic=0x10000000000000000", "64 bits"),
    ("measure uid=-1", 9, "uid=-1", "decimal id"),
    ("measure uid=4294967295", 9, "uid=4294967295", "decimal id"),
    ("measure uid=0x10", 9, "uid=0x10", "decimal id"),
    ("measure uid=0 euid=0", 15, "euid=0", "share one value"),
    ("measure gid<5 egid>1", 15, "egid>1", "share one value"),
    ("measure fowner=0 fowner=1", 18, "fowner=1", "twice"),
    ("measure fsuuid=8bcbe394-4f13-4144-be8e", 9, "fsuuid=8bcbe394-4f13-4144-be8e", "UUID"),
    ("measure pcr=64", 9, "pcr=64", "0..63"),
    ("dont_measure pcr=10", 14, "pcr=10", "only valid with measure"),
    ("template=ima-ng measure", 1, "template=ima-ng", "after the measure action"),
    ("measure template=ima-sigv3", 9, "template=ima-sigv3", "unknown template"),
    ("dont_measure template=ima-ng", 14, "template=ima-ng", "after the measure action"),
    ("measure func=BPRM_CHECK appraise_type=imasig", 25, "appraise_type=imasig",
     "only valid with appraise"),
    ("appraise appraise_type=sigv3", 10, "appraise_type=sigv3", "digest_type=verity"),
    ("appraise func=BPRM_CHECK appraise_type=imasig digest_type=verity", 47,
     "digest_type=verity", "before appraise_type"),
    ("appraise func=FILE_CHECK digest_type=verity", 26, "digest_type=verity", "sigv3"),
    ("appraise func=MODULE_CHECK digest_type=verity appraise_type=sigv3", 28,
     "digest_type=verity", "not allowed with func=MODULE_CHECK"),
    ("measure digest_type=sha256", 9, "digest_type=sha256", "verity"),
    ("appraise appraise_algos=sha256,,sha1", 10, "appraise_algos=sha256,,sha1",
     "unknown hash algorithm"),
    ("appraise appraise_algos=sha3-256", 10, "appraise_algos=sha3-256", "unknown hash"),
    ("appraise func=SETXATTR_CHECK", 10, "func=SETXATTR_CHECK", "needs appraise_algos"),
    ("measure func=SETXATTR_CHECK appraise_algos=sha256", 29, "appraise_algos=sha256",
     "only valid with appraise"),
    ("dont_appraise func=SETXATTR_CHECK", 15, "func=SETXATTR_CHECK", "only appraise"),
    ("appraise func=SETXATTR_CHECK appraise_algos=sha256 fowner=0", 52, "fowner=0",
     "not allowed with func=SETXATTR_CHECK"),
    ("measure func=KEY_CHECK mask=MAY_READ", 24, "mask=MAY_READ", "not allowed"),
    ("appraise func=KEY_CHECK", 10, "func=KEY_CHECK", "only measure and dont_measure"),
    ("measure func=KEY_CHECK subj_user=u", 9, "func=KEY_CHECK", "no LSM condition"),
    ("measure func=CRITICAL_DATA keyrings=.ima", 28, "keyrings=.ima", "not allowed"),
    ("measure func=KEY_CHECK keyrings=.ima||.builtin_trusted_keys", 24,
     "keyrings=.ima||.builtin_trusted_keys", "empty item"),
    ("measure keyrings=.ima", 9, "keyrings=.ima", "without func="),
    ("measure func=KEXEC_CMDLINE mask=MAY_READ", 28, "mask=MAY_READ", "not allowed"),
    ("measure func=FILE_CHECK label=x", 25, "label=x", "not allowed"),
    ("measure func=BPRM_CHECK appraise_flag=check_blacklist", 25,
     "appraise_flag=check_blacklist", "CONFIG_IMA_APPRAISE_MODSIG"),
    ("measure func=BPRM_CHECK # executables", 25, "#", "own line"),
    ("measure func=BPRM_CHECK mesure", 25, "mesure", "unknown keyword"),
    ("measure obj_type=a obj_type=b", 20, "obj_type=b", "twice"),
]


@pytest.mark.parametrize(("rule", "column", "token", "reason"), INVALID)
def test_invalid_rules(rule: str, column: int, token: str, reason: str) -> None:
    text = "# a comment\n\nmeasure func=BPRM_CHECK\n  " + rule + "\n"
    with pytest.raises(ImaPolicyError) as ei:
        ip.check_policy(text.encode(), "bad.policy")
    err = ei.value
    assert isinstance(err, RewriteError)
    assert (err.source, err.line, err.column, err.token) == ("bad.policy", 4, column + 2, token)
    assert reason in err.reason
    assert str(err).startswith("bad.policy:4:%d: " % (column + 2))
    assert repr(token) in str(err)


def test_line_level_errors() -> None:
    with pytest.raises(ImaPolicyError, match="carriage return") as ei:
        ip.check_policy(b"measure func=BPRM_CHECK\r\nmeasure func=MODULE_CHECK\r\n", "crlf")
    assert (ei.value.line, ei.value.column, ei.value.token) == (1, 24, "func=BPRM_CHECK\r")
    with pytest.raises(ImaPolicyError, match="UTF-8") as ei:
        ip.check_policy(b"measure fsname=\xff\n", "bin")
    assert (ei.value.line, ei.value.column) == (1, 16)
    with pytest.raises(ImaPolicyError, match="NUL") as ei:
        ip.check_policy(b"# ok\nmeasure\0 func=BPRM_CHECK\n", "nul")
    assert ei.value.line == 2
    long_rule = "measure fsname=" + "x" * ip.MAX_RULE_BYTES
    with pytest.raises(ImaPolicyError, match="at most 4094") as ei:
        ip.check_policy(long_rule.encode(), "long")
    assert ei.value.line == 1


def test_comments_blank_lines_and_whitespace() -> None:
    text = b"  # indented comment\n\t\n\t measure \t func=BPRM_CHECK  mask=MAY_EXEC \n#x\n"
    checked = ip.check_policy(text, "ws")
    assert [(r.line, r.render()) for r in checked.rules] == [
        (3, "measure func=BPRM_CHECK mask=MAY_EXEC")]
    assert checked.data == text
    assert checked.sha384 == __import__("hashlib").sha384(text).hexdigest()


def test_boot_warnings() -> None:
    checked = ip.check_policy(b"measure func=BPRM_CHECK pcr=15\nmeasure func=MODULE_CHECK pcr=30"
                              b"\nmeasure fsname=a fsname=b\n", "w", agent_pcr=15)
    assert [(w.line, w.code) for w in checked.warnings] == [
        (1, "pcr-agent"), (2, "pcr-range"), (3, "duplicate-ignored")]
    assert ip.check_policy(b"measure func=BPRM_CHECK pcr=15\n", "w", agent_pcr=None).warnings == []
    empty = ip.check_policy(b"# nothing\n", "e")
    assert empty.rules == [] and [w.code for w in empty.warnings] == ["empty-policy"]


# --- presets ---------------------------------------------------------------------------------

# include/uapi/linux/magic.h values of the 13 file systems in ima_policy.c dont_measure_rules.
KERNEL_DONT_MEASURE = [0x9FA0, 0x62656572, 0x64626720, 0x01021994, 0x1CD1, 0x42494E4D,
                       0x73636673, 0xF97CFF8C, 0x43415D53, 0x27E0EB, 0x63677270, 0x6E736673,
                       0xDE5E81E4]


def _dont_measure_magics(rules: list[ip.ImaRule]) -> list[int]:
    return [int(r.get("fsmagic") or "", 16) for r in rules if r.action == "dont_measure"]


@pytest.mark.parametrize("name", ip.preset_names())
def test_every_preset_passes(name: str) -> None:
    text = ip.preset(name)
    checked = ip.check_policy(text.encode(), "preset " + name)
    assert not [w for w in checked.warnings if w.code != "empty-policy"]
    assert ip.check_policy(checked.render().encode(), "again").rules == [
        dataclasses.replace(r, line=i + 1) for i, r in enumerate(checked.rules)]


def test_tcb_preset_is_the_kernel_tcb_policy() -> None:
    rules = rules_of(ip.preset("tcb"))
    assert _dont_measure_magics(rules) == KERNEL_DONT_MEASURE
    # default_measurement_rules of ima_policy.c, in order (IMA_INMASK is mask=^...).
    assert [r.render() for r in rules if r.action == "measure"] == [
        "measure func=MMAP_CHECK mask=MAY_EXEC",
        "measure func=BPRM_CHECK mask=MAY_EXEC",
        "measure func=FILE_CHECK mask=^MAY_READ euid=0",
        "measure func=FILE_CHECK mask=^MAY_READ uid=0",
        "measure func=MODULE_CHECK",
        "measure func=FIRMWARE_CHECK",
        "measure func=POLICY_CHECK",
    ]


def test_exec_modules_preset() -> None:
    rules = rules_of(ip.preset("exec-modules"))
    assert _dont_measure_magics(rules) == KERNEL_DONT_MEASURE
    measured = {(r.func, r.get("mask")) for r in rules if r.action == "measure"}
    assert measured == {("BPRM_CHECK", "MAY_EXEC"), ("MMAP_CHECK", "MAY_EXEC"),
                        ("MODULE_CHECK", None), ("FIRMWARE_CHECK", None),
                        ("KEXEC_KERNEL_CHECK", None), ("KEXEC_INITRAMFS_CHECK", None),
                        ("POLICY_CHECK", None)}
    assert all(r.action in ("measure", "dont_measure") for r in rules)
    # the dont_measure lines come first, as first-match order needs
    first_measure = [r.action for r in rules].index("measure")
    assert all(r.action == "measure" for r in rules[first_measure:])


def test_none_preset_and_unknown() -> None:
    assert rules_of(ip.preset("none")) == []
    with pytest.raises(ImaPolicyError, match=r"unknown IMA policy preset.*exec-modules"):
        ip.preset("everything")
    assert [n for n, _ in ip.describe_presets()] == ip.preset_names()


# --- kernel arguments -----------------------------------------------------------------------


def test_kernel_cmdline() -> None:
    checked = ip.check_policy(ip.preset("exec-modules").encode(), "p")
    assert ip.kernel_cmdline_for(checked) == ["ima_template=ima-ng", "ima_hash=sha256"]
    assert checked.warnings == []
    assert ip.kernel_cmdline_for(checked, "ima-sig", "sha1") == [
        "ima_template=ima-sig", "ima_hash=sha1"]
    assert ip.kernel_cmdline_for(None) == ["ima_template=ima-ng", "ima_hash=sha256"]
    assert ip.kernel_cmdline_for(checked, hash_alg="sha384") == [
        "ima_template=ima-ng", "ima_hash=sha384"]
    assert [w.code for w in checked.warnings] == ["hash-module"]
    with pytest.raises(ImaPolicyError, match="unknown IMA template"):
        ip.kernel_cmdline_for(checked, template="ima-sigv3")
    with pytest.raises(ImaPolicyError, match="unknown hash"):
        ip.kernel_cmdline_for(checked, hash_alg="sha3-256")
    with pytest.raises(ImaPolicyError, match="only sha1 or md5"):
        ip.kernel_cmdline_for(checked, template="ima", hash_alg="sha256")
    assert ip.kernel_cmdline_for(checked, template="ima", hash_alg="sha1")[0] == "ima_template=ima"


# --- properties ------------------------------------------------------------------------------

_FILE_FUNCS = ["FILE_CHECK", "MMAP_CHECK", "BPRM_CHECK", "CREDS_CHECK", "FIRMWARE_CHECK",
               "POLICY_CHECK", "MODULE_CHECK", "KEXEC_KERNEL_CHECK", "KEXEC_INITRAMFS_CHECK"]


@st.composite
def valid_rules(draw: st.DrawFn) -> str:
    action = draw(st.sampled_from(["measure", "dont_measure", "audit", "hash", "dont_hash",
                                   "appraise", "dont_appraise"]))
    terms = []
    if draw(st.booleans()):
        terms.append("func=" + draw(st.sampled_from(_FILE_FUNCS)))
    if draw(st.booleans()):
        terms.append("mask=" + draw(st.sampled_from(["", "^"]))
                     + draw(st.sampled_from(ip.MASKS)))
    if draw(st.booleans()):
        terms.append("fsmagic=0x%x" % draw(st.integers(0, 2**64 - 1)))
    for slot in (("uid", "euid"), ("gid", "egid"), ("fowner",), ("fgroup",)):
        if draw(st.booleans()):
            key = draw(st.sampled_from(slot))
            terms.append(key + draw(st.sampled_from("=<>"))
                         + str(draw(st.integers(0, 2**32 - 2))))
    if draw(st.booleans()):
        terms.append("fsuuid=" + str(draw(st.uuids())))
    if draw(st.booleans()):
        terms.append("fsname=" + draw(st.text("abcdefxyz0123456789_-", min_size=1, max_size=8)))
    if action == "measure" and draw(st.booleans()):
        terms.append("pcr=%d" % draw(st.integers(0, 63)))
    if action == "measure" and draw(st.booleans()):
        terms.append("template=" + draw(st.sampled_from(sorted(ip.TEMPLATES))))
    if action == "appraise" and draw(st.booleans()):
        terms.append("appraise_type=imasig")
    if draw(st.booleans()):
        terms.append("permit_directio")
    order = draw(st.permutations(terms))
    if action != "measure":
        return " ".join([action, *order])
    # template= must follow the action; everything else may come before it
    cut = draw(st.integers(0, len(order)))
    head = [t for t in order[:cut] if not t.startswith("template=")]
    tail = [t for t in order[:cut] if t.startswith("template=")] + list(order[cut:])
    return " ".join([*head, action, *tail])


@settings(max_examples=300, deadline=None)
@given(st.lists(valid_rules(), min_size=1, max_size=6), st.data())
def test_render_then_parse_is_stable(lines: list[str], data: st.DataObject) -> None:
    seps = [data.draw(st.sampled_from(["\n", "\n\n", "\n# c\n", "\n \t\n"])) for _ in lines]
    text = "".join(line.replace(" ", data.draw(st.sampled_from([" ", "\t", "  "]))) + sep
                   for line, sep in zip(lines, seps, strict=True))
    checked = ip.check_policy(text.encode(), "gen", FULL)
    assert len(checked.rules) == len(lines)
    rendered = checked.render()
    again = ip.check_policy(rendered.encode(), "rendered", FULL)
    assert again.render() == rendered
    assert [(r.action, r.terms) for r in again.rules] == [(r.action, r.terms)
                                                          for r in checked.rules]
    for line, rule in zip(lines, checked.rules, strict=True):
        assert sorted(line.split()) == sorted(rule.render().split())
