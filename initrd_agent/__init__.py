"""The cvmchain initrd agent (MicroPython, in ``initrd_agent/agent/``) and its host-side helpers."""
