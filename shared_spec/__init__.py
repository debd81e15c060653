"""TCG / CCEL / IMA / TDX structure definitions, codecs and replay.

Everything in this package runs unchanged on CPython 3.10+ and on
MicroPython 1.25+. Rules that keep it so:

- imports are limited to ``struct`` and modules of this package;
- hashing is passed in by the caller (see :mod:`shared_spec.hashing`);
- annotations use builtin generics and ``X | None`` (MicroPython ignores them);
- no dataclasses, no f-string ``=`` specifiers, no ``typing`` at run time.
"""

__version__ = "0.1.0"
