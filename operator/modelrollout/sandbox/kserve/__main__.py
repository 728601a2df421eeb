"""``python -m modelrollout.sandbox.kserve --kubeconfig FILE``: the local KServe controller.

With ``--runtime instant`` (the default) every revision is ready at once and nothing serves;
with ``--runtime process`` each revision is a real KServe model server and a router on
``--router-port`` splits predictions and exports Knative's metrics (see :mod:`.dataplane`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from modelrollout.sandbox.kserve import dataplane
from modelrollout.sandbox.kserve.controller import run
from modelrollout.sandbox.kserve.runtime import InstantRuntime


def _storage_root(text: str) -> tuple[str, Path]:
    prefix, sep, folder = text.partition("=")
    if not sep or not prefix or not folder:
        raise argparse.ArgumentTypeError(f"{text!r}: use PREFIX=FOLDER, e.g. s3://bucket/=/data")
    return prefix, Path(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelrollout.sandbox.kserve",
        description="Keep KServe's revisions, traffic and status for the InferenceServices "
        "of the cluster in KUBECONFIG.",
    )
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    parser.add_argument(
        "--requeue-seconds",
        type=float,
        default=0.5,
        help="how soon an InferenceService with a revision not ready yet is looked at again",
    )
    parser.add_argument(
        "--watch-timeout-seconds",
        type=int,
        default=5,
        help="how long one watch request lasts (also how long stopping may take)",
    )
    parser.add_argument("--runtime", choices=("instant", "process"), default="instant")
    parser.add_argument("--router-port", type=int, default=0, help="with --runtime process")
    parser.add_argument("--run-dir", type=Path, default=Path("."), help="model server logs")
    parser.add_argument(
        "--storage-root",
        type=_storage_root,
        action="append",
        default=[],
        help="PREFIX=FOLDER: where the models behind a storage URI prefix are on this machine",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_until_signalled(args))
    return 0


async def _until_signalled(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if args.runtime == "process":
        await dataplane.run(
            args.kubeconfig, args.run_dir, args.storage_root, args.router_port, stop
        )
        return
    await run(
        args.kubeconfig,
        InstantRuntime(),
        stop,
        requeue_seconds=args.requeue_seconds,
        watch_timeout_seconds=args.watch_timeout_seconds,
    )


if __name__ == "__main__":
    raise SystemExit(main())
