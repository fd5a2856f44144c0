"""Which host runs a virtual room or session: rendezvous (highest-random-weight) hashing.

Every gateway and API replica computes the same answer from the id and the host count alone, with
no directory to consult or keep consistent. Growing the pool from n to n+1 hosts moves only about
1/(n+1) of the rooms, as consistent hashing promises, without a ring to maintain.
"""

from __future__ import annotations

import hashlib


def host_index(key: str, hosts: int) -> int:
    """The host (0..hosts-1) owning ``key``."""
    if hosts < 1:
        raise ValueError("need at least one host")
    return max(range(hosts), key=lambda i: _weight(key, i))


def _weight(key: str, host: int) -> int:
    digest = hashlib.blake2b(f"{host}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
