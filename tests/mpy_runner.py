"""Run the shared test vectors (tests/spec/test_*.py) under MicroPython (or CPython).

Usage: micropython tests/mpy_runner.py [MODULE ...], with MICROPYPATH holding
the repository root and initrd_agent/agent. Exit 1 when any test fails.
"""

import os
import sys

try:
    here = __file__.rsplit("/", 1)[0]
except AttributeError:
    here = "tests"
root = here.rsplit("/", 1)[0] if "/" in here else "."
for p in (root, root + "/initrd_agent/agent"):
    if p not in sys.path:
        sys.path.insert(0, p)

from tests.spec._compat import Skip  # noqa: E402


def modules(selected):
    if selected:
        return selected
    names = sorted(n[:-3] for n in os.listdir(root + "/tests/spec")
                   if n.startswith("test_") and n.endswith(".py"))
    return names


def main():
    passed = failed = skipped = 0
    for name in modules(sys.argv[1:]):
        mod = __import__("tests.spec." + name, None, None, ["x"])
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            fn = getattr(mod, attr)
            try:
                fn()
                passed += 1
            except Skip as e:
                skipped += 1
                print("SKIP %s.%s: %s" % (name, attr, e))
            except Exception as e:
                failed += 1
                print("FAIL %s.%s: %s: %s" % (name, attr, type(e).__name__, e))
                if hasattr(sys, "print_exception"):
                    sys.print_exception(e)
    impl = sys.implementation.name
    print("%s: %d passed, %d failed, %d skipped" % (impl, passed, failed, skipped))
    sys.exit(1 if failed else 0)


main()
