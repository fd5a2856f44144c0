"""Named, detached actors found or created by name from any process, with their handles cached.

Room and session hosts, fingerprint shards and recommendation shards are all pools of this kind: any
caller may be the first to need one, so each is created with ``get_if_exists``; a restarted actor keeps
its id, so a cached handle outlives crashes, and only an actor killed for good (``kill``) is forgotten.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.actor import ActorClass, ActorHandle

NAMESPACE = "verseflow"

_handles: dict[str, ActorHandle] = {}


def get_or_create(actor_class: ActorClass, name: str, *args: Any, **options: Any) -> ActorHandle:  # noqa: ANN401
    """The actor called ``name``, created with ``args`` if it does not exist yet (blocks: Ray).

    ``options`` (a scheduling strategy) apply only when this call creates it."""
    if name not in _handles:
        _handles[name] = actor_class.options(name=name, namespace=NAMESPACE, lifetime="detached",
                                             get_if_exists=True, **options).remote(*args)
    return _handles[name]


def forget(names: list[str]) -> None:
    """Drop cached handles of actors stopped for good elsewhere; the next call finds or creates them anew."""
    for name in names:
        _handles.pop(name, None)


def kill(names: list[str]) -> None:
    """Kill these actors for good (no restart) and forget their handles; missing ones are skipped."""
    for name in names:
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            continue
        _handles.pop(name, None)
