"""The ``modelrollout`` command (also installed as ``kubectl-modelrollout``).

``run`` is the operator; ``demo`` and ``sandbox`` are the local environment, which needs no
cluster. ``status``, ``history``, ``promote``, ``abort``, ``retry``, ``pause``, ``resume`` and
``lint`` are for people (``ctl.py``). The sandbox modules are imported only when their command
runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from modelrollout import __version__, ctl
from modelrollout.sandbox import demo
from modelrollout.sandbox import up as sandbox_stack
from modelrollout.sandbox.kubeapi import command as kube_api


def main(argv: list[str] | None = None) -> int:
    # kubectl runs the plugin as kubectl-modelrollout: the usage says what the person typed.
    plugin = os.path.basename(sys.argv[0]).startswith("kubectl-")
    parser = argparse.ArgumentParser(
        prog="kubectl modelrollout" if plugin else "modelrollout",
        description="GitOps canary rollouts of ML models on KServe.",
    )
    parser.add_argument("--version", action="version", version=f"modelrollout {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo.add_parser(commands)
    run = commands.add_parser(
        "run",
        help="the operator (kopf); configured by KUBECONFIG and MODELROLLOUT_* variables",
        description="Run the operator in the foreground until SIGTERM or SIGINT.",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")
    sandbox = commands.add_parser("sandbox", help="the local environment that needs no cluster")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", metavar="COMMAND")
    kube_api.add_parser(sandbox_commands)
    sandbox_stack.add_parsers(sandbox_commands)
    ctl.add_parsers(commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in ctl.COMMANDS:
        return ctl.run(args)
    if args.command == "run":
        return _run_operator(verbose=args.verbose)
    if args.command == "sandbox":
        if args.sandbox_command is None:
            sandbox.print_help()
            return 2
        if args.sandbox_command in ("up", "down", "status"):
            return sandbox_stack.run(args)
        return kube_api.run(args)
    return demo.run(args)


def _run_operator(*, verbose: bool) -> int:
    import logging
    import secrets

    import kopf

    from modelrollout import handlers  # registers the handlers with kopf

    settings = handlers.SETTINGS
    level = settings.log_level.upper()
    if not isinstance(logging.getLevelName(level), int):
        print(f"modelrollout run: MODELROLLOUT_LOG_LEVEL={level!r} is not a log level "
              "(DEBUG, INFO, WARNING or ERROR)", file=sys.stderr)  # fmt: skip
        return 2
    kopf.configure(verbose=verbose, log_prefix=True)
    if not verbose:
        logging.getLogger().setLevel(level)
    priority = settings.peering_priority or secrets.randbelow(2**31 - 1) + 1
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=settings.liveness_endpoint,
        standalone=settings.peering is None,
        peering_name=settings.peering,
        priority=priority if settings.peering else 0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
