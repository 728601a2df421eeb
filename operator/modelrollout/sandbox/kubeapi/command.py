"""``modelrollout sandbox kube-api``: its options, and running it (imports kmock only then)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "kube-api",
        help="the Kubernetes API server emulator alone, in the foreground",
        description="Serve the Kubernetes API emulator on 127.0.0.1 until SIGTERM or SIGINT.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument(
        "--kubeconfig", type=Path, required=True, help="where to write a kubeconfig for it"
    )
    parser.add_argument(
        "--crd", type=Path, action="append", default=[], help="a CRD file to apply at start-up"
    )
    parser.add_argument(
        "--history-limit",
        type=int,
        default=2000,
        help="changes kept for watches from a resourceVersion (older ones answer 410)",
    )
    parser.add_argument(
        "--bookmark-interval",
        type=float,
        default=60.0,
        help="seconds between BOOKMARK events on watches that allow them",
    )


def run(args: argparse.Namespace) -> int:
    from modelrollout.sandbox.kubeapi.app import serve
    from modelrollout.sandbox.kubeapi.server import configure_logging

    configure_logging()
    return asyncio.run(
        serve(args.port, args.kubeconfig, args.crd, args.bookmark_interval, args.history_limit)
    )
