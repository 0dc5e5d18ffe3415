"""The simulated engine: a virtual-clock LLM and reward server over a synthetic reasoning task."""

from runtime.engines.sim.counters import SimStats
from runtime.engines.sim.engine import SimEngine
from runtime.engines.sim.profile import CostProfile, ServerCost, list_profiles, load_profile
from runtime.engines.sim.task import TaskParams

__all__ = [
    "CostProfile",
    "ServerCost",
    "SimEngine",
    "SimStats",
    "TaskParams",
    "list_profiles",
    "load_profile",
]
