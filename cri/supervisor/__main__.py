"""`python -m cri.supervisor --state DIR [--daemonize]`: see `cri.supervisor.daemon`."""

from __future__ import annotations

from cri.supervisor.daemon import main

raise SystemExit(main())
