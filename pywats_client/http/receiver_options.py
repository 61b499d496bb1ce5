"""The command-line options of `pywats-client receiver`, kept apart from the server itself so
that building the CLI's parser (and so `pywats-client --help`) does not import an HTTP server.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["add_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `pywats-client receiver`."""
    parser.add_argument("--store", type=Path, required=True,
                        help="folder where received reports are written (<id>.json)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; others need --allow-remote)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 = any)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host (the control routes have no auth)")
    parser.add_argument("--token", default=os.environ.get("PYWATS_RECEIVER_TOKEN"),
                        help="require 'Authorization: Basic <token>' (default: "
                             "$PYWATS_RECEIVER_TOKEN; unset = any Authorization header)")
    parser.add_argument("--prefix", default="", help="path prefix, e.g. /wats -> /wats/api/...")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault dice (default 0)")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM",
                        help="serve HTTPS with this certificate (chain) file")
    parser.add_argument("--tls-key", type=Path, metavar="PEM",
                        help="private key of --tls-cert (if not in the same file)")
    parser.add_argument("--max-body-bytes", type=int, default=50 * 2**20,
                        help="larger report bodies get 413 (default 50 MiB)")
    faults = parser.add_argument_group("faults (fractions are of report POSTs, 0..1)")
    faults.add_argument("--latency-ms", type=float, default=0.0,
                        help="answer report POSTs and the version probe this long after they "
                             "arrive, the receiver's own work included (a server's latency)")
    faults.add_argument("--error-rate", type=float, default=0.0, help="answer 500")
    faults.add_argument("--reset-rate", type=float, default=0.0, help="reset without answering")
    faults.add_argument("--rate-limit-rate", type=float, default=0.0,
                        help="answer 429 with Retry-After")
    faults.add_argument("--retry-after", type=float, default=1.0,
                        help="seconds sent in Retry-After (default 1)")
    faults.add_argument("--reject-rate", type=float, default=0.0, help="answer 400")
    faults.add_argument("--timeout-after-store-rate", type=float, default=0.0,
                        help="store, then do not answer for --hang-seconds")
    faults.add_argument("--hang-seconds", type=float, default=30.0)
    faults.add_argument("--auth-fail", action="store_true", help="answer 401 to everything")
