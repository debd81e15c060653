"""Predict what the agent will log and extend, from what the rewriter put in the image.

The events are built with the agent's own encoder (``shared_spec.agent_events``) from
the same bytes the agent will read at boot: the configuration file, the IMA policy
file and the rootfs manifest computed from the image. Register predictions start from
the reset value (zero) of the agent's registers, which firmware does not touch.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cloud_sdk.reference import Reference, ReferenceEvent
from initrd_agent.config import AgentConfig
from shared_spec import agent_events as ae
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512, alg_name
from shared_spec.event_types import EV_EVENT_TAG

#: PCR banks the reference predicts (the vTPM's active banks are known only at boot).
PCR_BANKS = (ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512)
GENERATOR = "cvmchain rewrite"


def _h(alg: int, data: bytes) -> bytes:
    return hashlib.new(alg_name(alg), data).digest()


def predicted_descriptors(config_text: str, ima_policy: bytes | None,
                          rootfs_descriptor: str) -> list[str]:
    """The agent's extended descriptors, in order (see ``cvmchain_agent``)."""
    return [
        ae.config_descriptor(hashlib.sha384(config_text.encode()).hexdigest()),
        (ae.ima_policy_descriptor(hashlib.sha384(ima_policy).hexdigest())
         if ima_policy is not None else ae.IMA_POLICY_NONE),
        rootfs_descriptor,
        ae.LEAVE_INITRD,
    ]


def build_reference(config: AgentConfig, ima_policy: bytes | None, rootfs: dict[str, Any],
                    rootfs_descriptor: str, image: dict[str, Any],
                    version: str = "") -> Reference:
    """The reference file's content for an image rewritten with ``config``.

    ``rootfs`` is the reference's ``rootfs`` section (mode, manifest digest, ...).
    """
    config_text = config.render()
    events = []
    for desc in predicted_descriptors(config_text, ima_policy, rootfs_descriptor):
        data = ae.encode_event_data(desc)
        events.append(ReferenceEvent(desc, EV_EVENT_TAG, data,
                                     {alg: _h(alg, data) for alg in PCR_BANKS}))
    cc_mr = bytes(48)
    pcrs = {alg: bytes(hashlib.new(alg_name(alg)).digest_size) for alg in PCR_BANKS}
    for ev in events:
        cc_mr = _h(ALG_SHA384, cc_mr + ev.digests[ALG_SHA384])
        for alg in PCR_BANKS:
            pcrs[alg] = _h(alg, pcrs[alg] + ev.digests[alg])
    policy = None
    if ima_policy is not None:
        policy = {"sha384": hashlib.sha384(ima_policy).hexdigest(),
                  "sha256": hashlib.sha256(ima_policy).hexdigest(),
                  "path": config.ima_policy,
                  "text": ima_policy.decode("utf-8", "replace")}
    ref = Reference(events=events, agent_config=config_text, rootfs=rootfs, ima_policy=policy,
                    image=image, generator=("%s %s" % (GENERATOR, version)).strip())
    if config.roots != "tpm":
        ref.cc_mr_index = config.cc_mr_index
        ref.cc_mr_initial = bytes(48)
        ref.cc_mr_value = cc_mr
    if config.roots != "tdx":
        ref.pcr_index = config.tpm_pcr
        ref.pcr_values = pcrs
    return ref
