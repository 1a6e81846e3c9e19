"""Build ncps 1.0.1 reference models that share our wiring (for equivalence tests and benchmarks).

ncps is a test/benchmark-only dependency (requirements-dev.txt); it is imported inside the functions.

ncps draws its NCP synapses with its own legacy RNG inside ``build()`` and draws again on every
``build()`` call, so equal seeds do not give equal wirings. ``ncps_wiring`` therefore creates the ncps
wiring object with the same neuron counts, sets the input size, copies our ``adjacency`` /
``sensory_adjacency`` into it and disables its ``build`` (our matrices must survive the model's
constructor). Weights then go from the ncps model into ours with ``cell.load_ncps(model)``.
"""
from __future__ import annotations

import numpy as np

from liquid_controller.errors import InputError
from liquid_controller.policy.wiring import FullyConnectedWiring, NCPWiring

__all__ = ['ncps_wiring', 'ncps_cfc', 'ncps_ltc', 'paired_cfc', 'paired_ltc']


def ncps_wiring(wiring):
    """An ncps wiring with exactly our (built) wiring's neurons and synapses."""
    from ncps import wirings as nw

    if not wiring.is_built():
        raise InputError('wiring', wiring, 'must be built (call build(input_size))')
    if isinstance(wiring, NCPWiring):
        theirs = nw.NCP(wiring.inter_neurons, wiring.command_neurons, wiring.motor_neurons,
                        wiring.sensory_fanout, wiring.inter_fanout,
                        wiring.recurrent_command_synapses, wiring.motor_fanin)
    elif isinstance(wiring, FullyConnectedWiring):
        theirs = nw.FullyConnected(wiring.units, wiring.output_size)
    else:
        raise InputError('wiring', type(wiring).__name__, 'has no ncps counterpart')
    theirs.set_input_dim(wiring.input_size)  # base-class method: sets the size, draws nothing
    theirs.adjacency_matrix = wiring.adjacency.astype(np.int32)
    theirs.sensory_adjacency_matrix = wiring.sensory_adjacency.astype(np.int32)

    def build(input_dim):
        if input_dim != wiring.input_size:
            raise ValueError(f'wiring copied for input size {wiring.input_size}, got {input_dim}')

    theirs.build = build  # keep the copied synapses when the ncps model calls build()
    return theirs


def ncps_cfc(cell):
    """An ``ncps.torch.CfC`` (batch_first) on ``cell``'s wiring and mode, random ncps weights."""
    from ncps.torch import CfC as NcpsCfC

    return NcpsCfC(cell.input_size, ncps_wiring(cell.wiring), mode=cell.mode, batch_first=True)


def ncps_ltc(cell):
    """An ``ncps.torch.LTC`` (batch_first) on ``cell``'s wiring and settings, random ncps weights."""
    from ncps.torch import LTC as NcpsLTC

    return NcpsLTC(cell.input_size, ncps_wiring(cell.wiring), batch_first=True,
                   ode_unfolds=cell.ode_unfolds, epsilon=cell.epsilon,
                   implicit_param_constraints=cell.implicit_constraints)


def paired_cfc(cell):
    """ncps CfC with ``cell``'s wiring; ``cell`` receives the ncps weights. Returns the ncps model."""
    theirs = ncps_cfc(cell)
    cell.load_ncps(theirs)
    return theirs


def paired_ltc(cell):
    """ncps LTC with ``cell``'s wiring; ``cell`` receives the ncps weights. Returns the ncps model."""
    theirs = ncps_ltc(cell)
    cell.load_ncps(theirs)
    return theirs
