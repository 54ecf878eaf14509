"""`kubeling <component> ...`: dispatch to each layer's command line, importing only
the one asked for (start-up time matters for `kubeling runtime`)."""

from __future__ import annotations

import sys

USAGE = """usage: kubeling <command> [args...]

commands:
  runtime   the OCI runtime, runc's command line (also installed as kubeling-runtime)
  images    the image store: pull, import, list, inspect, tag, rm, prune, build-busybox
  cri       the CRI v1 gRPC server
  apiserver the Kubernetes-compatible API server (HTTPS, SQLite store by default)
  scheduler binds pending pods to nodes (a client of the API server)
  controller-manager  ReplicaSet, Deployment, ServiceAccount, Endpoints, Namespace,
            node lifecycle and garbage-collector controllers (a client too)
  kubelet   the node agent: registers the node, runs its pods through CRI
  up        start a single-node cluster (API server, scheduler, controller-manager,
            CRI server, kubelet) as child processes; --detach runs it in the background
  down      stop what `kubeling up` runs (state kept; --purge removes the pods too)
  kubeconfig  print the admin kubeconfig `kubeling up` wrote
  demo      run a busybox container through the runtime and print what it says
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "runtime":
        from runtime.cli import main as runtime_main

        return int(runtime_main(rest))
    if command == "images":
        from images.cli import main as images_main

        return images_main(rest)
    if command == "cri":
        from cri.server import main as cri_main

        return cri_main(rest)
    if command == "apiserver":
        from control.apiserver.main import main as apiserver_main

        return apiserver_main(rest)
    if command == "scheduler":
        from control.scheduler.main import main as scheduler_main

        return scheduler_main(rest)
    if command == "controller-manager":
        from control.controllers.main import main as controllers_main

        return controllers_main(rest)
    if command == "kubelet":
        from kubelet.main import main as kubelet_main

        return int(kubelet_main(rest))
    if command in ("up", "down", "kubeconfig"):
        from kubeling import up

        commands = {"up": up.main_up, "down": up.main_down, "kubeconfig": up.main_kubeconfig}
        return commands[command](rest)
    if command == "demo":
        from kubeling.demo import main as demo_main

        return demo_main(rest)
    sys.stderr.write(f"kubeling: unknown command {command!r}\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
