"""The agent configuration on the host (CPython): defaults, rendering, parsing.

The format and its validation live in one place, ``initrd_agent/agent/agentconf.py``,
which the agent itself runs under MicroPython; this module loads that same file
and wraps it in a typed :class:`AgentConfig`, so the image rewriter writes exactly
what the agent accepts. The text the rewriter renders is what the agent
measures (``cvmchain:agent-config:sha384:<hex of the file's bytes>``), so
:meth:`AgentConfig.render` is canonical: every key, in a fixed order.
"""

from dataclasses import dataclass, field, fields

from initrd_agent.agent_module import load_agent_module

agentconf = load_agent_module("agentconf")
#: The agent's configuration error (message names the line and key).
ConfigError: type[Exception] = agentconf.ConfigError
DEFAULTS: dict[str, str] = dict(agentconf.DEFAULTS)
DEFAULT_INCLUDE: tuple[str, ...] = tuple(agentconf.DEFAULT_INCLUDE)


def _split(value: str) -> tuple[str, ...]:
    return tuple(value.split())


@dataclass(frozen=True)
class AgentConfig:
    """``/etc/cvmchain/agent.conf`` as values; see ``agentconf`` for each key."""

    rootfs_mode: str = DEFAULTS["rootfs_mode"]
    include: tuple[str, ...] = field(default=DEFAULT_INCLUDE)
    exclude: tuple[str, ...] = ()
    xattrs: tuple[str, ...] = _split(DEFAULTS["xattrs"])
    ima_policy: str = DEFAULTS["ima_policy"]
    ima_policy_load: str = DEFAULTS["ima_policy_load"]
    roots: str = DEFAULTS["roots"]
    tdx_rtmr: int = int(DEFAULTS["tdx_rtmr"])
    tsm_dir: str = DEFAULTS["tsm_dir"]
    tsm_register: str = DEFAULTS["tsm_register"]
    tdx_device: str = DEFAULTS["tdx_device"]
    tpm_pcr: int = int(DEFAULTS["tpm_pcr"])
    tpm_device: str = DEFAULTS["tpm_device"]
    on_error: str = DEFAULTS["on_error"]
    log_dir: str = DEFAULTS["log_dir"]

    def values(self) -> dict[str, str]:
        """Every key as the text the file holds."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = " ".join(v) if isinstance(v, tuple) else str(v)
        return out

    def render(self) -> str:
        """The canonical file text (validated by the agent's own parser)."""
        text: str = agentconf.render_config(self.values())
        return text

    @property
    def cc_mr_index(self) -> int:
        """The CC MR index the agent extends on TDX (RTMR n is MR n + 1)."""
        return self.tdx_rtmr + 1

    @classmethod
    def parse(cls, text: str) -> "AgentConfig":
        """Parse agent.conf text exactly as the agent does; :data:`ConfigError` if bad."""
        conf = agentconf.parse_config(text)
        kw: dict[str, object] = {}
        for f in fields(cls):
            v = conf[f.name]
            if f.name in ("include", "exclude", "xattrs"):
                kw[f.name] = _split(v)
            elif f.name in ("tdx_rtmr", "tpm_pcr"):
                kw[f.name] = int(v)
            else:
                kw[f.name] = v
        return cls(**kw)  # type: ignore[arg-type]


def _check_fields_match() -> None:
    names = [f.name for f in fields(AgentConfig)]
    if sorted(names) != sorted(DEFAULTS):
        raise RuntimeError("AgentConfig fields %s differ from the agent's keys %s"
                           % (names, sorted(DEFAULTS)))


_check_fields_match()
