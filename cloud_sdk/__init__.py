"""cvmchain runtime SDK: read the measurement chain, replay it and verify it.

The CLI (``cvmchain``) is a thin layer over these modules.
"""

__version__ = "0.1.0"
