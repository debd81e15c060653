"""The ``cvmchain`` command line: a thin layer over the library.

Exit codes, for every subcommand: 0 ok, 1 a check failed, 2 unusable input
(the message on stderr names the file and offset).
"""

import argparse
import sys
from collections.abc import Sequence

from cloud_sdk import (
    cli_eventlog,
    cli_evidence,
    cli_quote,
    cli_quote_get,
    cli_registers,
    cli_verify,
    demo,
)
from cloud_sdk.errors import CvmchainError
from image_rewriter import cli as cli_rewrite
from shared_spec.errors import SpecError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvmchain",
        description="Read, replay and verify the measurement chain of a confidential VM.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_eventlog.register(sub)
    cli_quote.register(sub)
    cli_quote_get.register(sub)
    cli_verify.register(sub)
    cli_rewrite.register(sub)
    demo.register(sub)
    cli_registers.register(sub)
    cli_evidence.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cvmchain`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except SpecError as e:
        print("cvmchain: error: %s" % e.located(), file=sys.stderr)
        return EXIT_UNUSABLE
    except CvmchainError as e:
        print("cvmchain: error: %s" % e, file=sys.stderr)
        return EXIT_UNUSABLE
    except BrokenPipeError:
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
