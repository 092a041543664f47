"""Which :class:`~meshmsg.sim.host.NodeFactory` a run uses: ``"core"`` or ``"module:callable"``.

Kept apart from :mod:`meshmsg.sim.host` so that the seam (the protocols and types every node
implements) imports no implementation of it: ``host`` ← ``corehost`` ← ``factories``, never back.
``"core"`` resolves through a plain import of :mod:`meshmsg.sim.corehost`, visible to the
import-cycle checks; only a researcher's own ``"module:callable"`` goes through ``importlib``.
"""

from __future__ import annotations

import importlib
from typing import cast

from meshmsg.errors import ConfigError
from meshmsg.sim.corehost import CoreFactory
from meshmsg.sim.host import NodeFactory


def load_factory(spec: str) -> NodeFactory:
    """Resolve ``"core"`` or ``"package.module:callable"`` to a fresh factory instance.

    Raises:
        ConfigError: the spec is malformed, or its module or callable does not exist.
    """
    if spec == "core":
        return core_node_factory()
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"agent must be 'core' or 'module:callable', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"agent module {module_name!r} cannot be imported: {exc}") from exc
    maker = getattr(module, attr, None)
    if maker is None or not callable(maker):
        raise ConfigError(f"agent {spec!r}: {attr!r} is not a callable in {module_name}")
    return cast(NodeFactory, maker())


def core_node_factory() -> NodeFactory:
    """The factory that builds the real protocol core (``meshmsg.core.node.Node``).

    THE SEAM. :class:`~meshmsg.sim.corehost.CoreFactory` maps a
    :class:`~meshmsg.sim.host.NodeSetup` onto ``NodeConfig`` (``store.max_store_bytes =
    buffer_bytes``, ONE-mode store and ``routing.drop_after_delivery = False`` when
    ``one_mode``), derives a deterministic identity per address from the seed, and pre-pairs
    with the core's offline pairing call.
    """
    return CoreFactory()
