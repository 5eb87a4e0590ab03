"""A stateful stand-in for the part of Stripe's REST API that Lode uses, driven by the real SDK.

It ships with Lode because the demo and development servers pay through it when no Stripe key is
configured; see ``stripe_simulator/simulator.py`` for what it simulates and what it simplifies.
"""

from stripe_simulator.simulator import SimulatedRequest, SimulatedStripeError, SimulatorHTTPClient, StripeSimulator

__all__ = ["SimulatedRequest", "SimulatedStripeError", "SimulatorHTTPClient", "StripeSimulator"]
