"""The ``modelrollout`` command (also installed as ``kubectl-modelrollout``).

``run`` is the operator; ``demo`` and ``sandbox`` are the local environment, which needs no
cluster. The sandbox modules are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import sys

from modelrollout import __version__
from modelrollout.sandbox import demo
from modelrollout.sandbox import up as sandbox_stack
from modelrollout.sandbox.kubeapi import command as kube_api


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="modelrollout", description="GitOps canary rollouts of ML models on KServe."
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
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
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
    import kopf

    from modelrollout import handlers  # registers the handlers with kopf

    settings = handlers.SETTINGS
    kopf.configure(verbose=verbose, log_prefix=True)
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=True,
        liveness_endpoint=settings.liveness_endpoint,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
