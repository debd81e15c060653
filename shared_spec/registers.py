"""Register naming and the PCR <-> CC MR mapping of UEFI 2.10 §38.4.1.

cvmchain uses one convention end to end: TPM registers are PCR numbers, TDX
registers are CC MR indexes (0 = MRTD, 1..4 = RTMR0..RTMR3). Labels show both
(``MR4 (RTMR3)``); nothing ever shifts an index silently.
"""

INDEX_PCR = "pcr"
INDEX_CC_MR = "cc_mr"

#: CC MR index of the MRTD; RTMR n is CC MR index n + 1.
CC_MR_MRTD = 0


def pcr_to_cc_mr(pcr: int) -> int | None:
    """UEFI 2.10 mapping: PCR0 -> MR0, PCR1,7 -> MR1, PCR2-6 -> MR2, PCR8-15 -> MR3."""
    if pcr == 0:
        return 0
    if pcr == 1 or pcr == 7:
        return 1
    if 2 <= pcr <= 6:
        return 2
    if 8 <= pcr <= 15:
        return 3
    return None


def cc_mr_to_pcrs(mr: int) -> list[int]:
    """The PCRs that UEFI maps onto CC MR index ``mr``."""
    return [p for p in range(24) if pcr_to_cc_mr(p) == mr]


def rtmr_to_cc_mr(rtmr: int) -> int:
    """RTMR n is CC MR index n + 1."""
    return rtmr + 1


def cc_mr_to_rtmr(mr: int) -> int | None:
    """CC MR index -> RTMR number; None for MR0 (the MRTD)."""
    return mr - 1 if mr >= 1 else None


def cc_mr_label(mr: int) -> str:
    """``MR0 (MRTD)``, ``MR4 (RTMR3)``."""
    if mr == 0:
        return "MR0 (MRTD)"
    return "MR%d (RTMR%d)" % (mr, mr - 1)


def register_label(index_kind: str, index: int) -> str:
    """A printable label for a register in either convention."""
    if index_kind == INDEX_CC_MR:
        return cc_mr_label(index)
    return "PCR %d" % index
