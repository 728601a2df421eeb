"""``python -m modelrollout.sandbox.kserve --kubeconfig FILE``: the local KServe controller.

Runs with :class:`~modelrollout.sandbox.kserve.runtime.InstantRuntime` (every revision is
ready at once) until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from modelrollout.sandbox.kserve.controller import run
from modelrollout.sandbox.kserve.runtime import InstantRuntime


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_until_signalled(args))
    return 0


async def _until_signalled(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run(
        args.kubeconfig,
        InstantRuntime(),
        stop,
        requeue_seconds=args.requeue_seconds,
        watch_timeout_seconds=args.watch_timeout_seconds,
    )


if __name__ == "__main__":
    raise SystemExit(main())
