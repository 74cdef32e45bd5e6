"""`ray start` for a second node of a cluster on this machine's loopback (tests only).

Ray rewrites 127.0.0.1 in `--address`/`--node-ip-address` to the machine's network address (a real cluster wants
that); a two-node cluster on one machine, reachable on 127.0.0.1 alone, must keep it. Usage: as `ray start`.
"""

import sys

import ray._private.services as services


def keep(host: str) -> str:
    if not host:
        raise ValueError(f"Malformed host: {host}")
    return host


services.resolve_ip_for_localhost = keep

from ray.scripts.scripts import main  # noqa: E402  (after the patch above)

if __name__ == "__main__":
    sys.exit(main())
