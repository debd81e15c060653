"""Load one of the agent's MicroPython modules (``initrd_agent/agent/*.py``) on CPython.

The host reuses the agent's own parsers (configuration, root-device probing) instead of
rewriting them, so host and agent cannot drift apart. The modules are plain Python
that both interpreters run; they are not a package, so they are loaded by path.
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

AGENT_DIR = Path(__file__).resolve().parent / "agent"


def load_agent_module(name: str) -> ModuleType:
    """``initrd_agent/agent/<name>.py``, loaded once as ``cvmchain_agent_<name>``."""
    key = "cvmchain_agent_" + name
    mod = sys.modules.get(key)
    if mod is None:
        spec = importlib.util.spec_from_file_location(key, AGENT_DIR / (name + ".py"))
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return mod
