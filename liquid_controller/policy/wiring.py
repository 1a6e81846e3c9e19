"""Neural circuit policy (NCP) wirings: which neuron talks to which, with what polarity.

Public API (contract 1 of the team brief):

- ``NCPWiring(inter_neurons, command_neurons, motor_neurons, sensory_fanout, inter_fanout,
  recurrent_command_synapses, motor_fanin, seed=22222)``: sensory -> inter -> command -> motor with
  recurrent command synapses (Lechner et al. 2020; ncps ``NCP``).
- ``auto_ncp(units, output_size, sparsity_level=0.5, seed=22222) -> NCPWiring``: the counts and fan-outs
  of ncps ``AutoNCP``.
- ``FullyConnectedWiring(units, output_size=None, seed=1111, self_connections=True)``.
- Every wiring: ``units``, ``output_size``, ``input_size`` (None until ``build(input_size)``),
  ``adjacency`` (units, units) int8 in {-1, 0, +1} (row = source neuron, column = destination),
  ``sensory_adjacency`` (input_size, units), ``layers()`` (neuron ids per layer in the order the cells
  compute them: inter, command, motor), ``neuron_groups()`` -> ``{'inter', 'command', 'motor'}`` lists of
  neuron ids (= indices into the hidden state), ``to_dict()`` / ``wiring_from_dict(d)``.

Neuron ids follow ncps: motor neurons first (0..motor-1), then command, then inter neurons. The hidden
state of both cells (``CfC``, ``LTC``) is indexed by neuron id.

Randomness: a wiring is drawn from ``numpy.random.default_rng(seed)`` when ``build(input_size)`` is
called (the sensory synapses need the input size, and drawing everything at once keeps one sequence of
draws per seed). The drawing procedure follows ncps (same counts, fan-outs and order of the layers), but
ncps uses the legacy ``RandomState``: the same seed does NOT give the same matrices as ncps. To compare
with ncps, copy our matrices into the ncps wiring (see ``test/policy/test_ncps_equivalence.py``).
"""
from __future__ import annotations

import numpy as np

from liquid_controller.errors import InputError
from liquid_controller.validation import check_int, check_number

__all__ = ['Wiring', 'NCPWiring', 'FullyConnectedWiring', 'auto_ncp', 'wiring_from_dict']


class Wiring:
    """Base class: a directed graph over ``units`` neurons plus sensory inputs.

    Subclasses fill ``adjacency`` (and ``sensory_adjacency`` in ``build``) with polarities -1/+1 (0 = no
    synapse) and say how neurons are grouped into layers.
    """

    kind = 'wiring'

    def __init__(self, units, output_size):
        self.units = check_int('units', units, 1)
        self.output_size = check_int('output_size', output_size, 1)
        if self.output_size > self.units:
            raise InputError('output_size', output_size, f'must be <= units ({self.units})')
        # (units, units): adjacency[src, dest] = polarity of the synapse src -> dest, 0 = none
        self.adjacency = np.zeros((self.units, self.units), dtype=np.int8)
        # (input_size, units), allocated by build()
        self.sensory_adjacency = None
        self.input_size = None

    # -- building -------------------------------------------------------------------------------
    def is_built(self):
        """True once the input size is known and the sensory synapses exist."""
        return self.input_size is not None

    def build(self, input_size):
        """Fix the input size and draw the synapses. Idempotent for the same input size."""
        input_size = check_int('input_size', input_size, 1)
        if self.input_size is not None:
            if input_size != self.input_size:
                raise InputError('input_size', input_size,
                                 f'wiring was already built for input_size={self.input_size}')
            return self
        self.input_size = input_size
        self.sensory_adjacency = np.zeros((input_size, self.units), dtype=np.int8)
        self._draw_synapses()
        return self

    def _draw_synapses(self):
        raise NotImplementedError

    def _require_built(self):
        if not self.is_built():
            raise InputError('wiring', self.kind, 'is not built: call build(input_size) first')

    # -- structure --------------------------------------------------------------------------------
    def layers(self):
        """Neuron ids of each layer in computation order (ncps ``get_neurons_of_layer``)."""
        raise NotImplementedError

    def neuron_groups(self):
        """``{'inter': [...], 'command': [...], 'motor': [...]}``: neuron ids (= hidden-state indices)."""
        raise NotImplementedError

    @property
    def num_layers(self):
        """Number of layers the CfC cell stacks (3 for an NCP, 1 fully connected)."""
        return len(self.layers())

    @property
    def synapse_count(self):
        """Number of neuron-to-neuron synapses."""
        return int(np.count_nonzero(self.adjacency))

    @property
    def sensory_synapse_count(self):
        """Number of sensory-to-neuron synapses (0 before build)."""
        return 0 if self.sensory_adjacency is None else int(np.count_nonzero(self.sensory_adjacency))

    # -- serialisation ----------------------------------------------------------------------------
    def _config(self):
        raise NotImplementedError

    def to_dict(self):
        """JSON-ready description: constructor arguments plus, when built, the exact matrices."""
        d = {'kind': self.kind, **self._config(), 'input_size': self.input_size}
        if self.is_built():
            d['adjacency'] = self.adjacency.astype(int).tolist()
            d['sensory_adjacency'] = self.sensory_adjacency.astype(int).tolist()
        return d

    @classmethod
    def from_dict(cls, d):
        """Inverse of ``to_dict``: rebuilds the wiring and restores (and checks) stored matrices."""
        if not isinstance(d, dict):
            raise InputError('wiring', d, 'must be a dict from Wiring.to_dict()')
        if d.get('kind') != cls.kind:
            raise InputError('wiring.kind', d.get('kind'), f'expected {cls.kind!r}')
        keys = set(d) - {'kind', 'input_size', 'adjacency', 'sensory_adjacency'}
        try:
            wiring = cls(**{k: d[k] for k in keys})
        except TypeError as exc:
            raise InputError('wiring', sorted(keys), f'unexpected keys: {exc}') from None
        if d.get('input_size') is not None:
            wiring.build(d['input_size'])
        for name, shape in (('adjacency', (wiring.units, wiring.units)),
                            ('sensory_adjacency', (wiring.input_size, wiring.units))):
            if d.get(name) is None:
                continue
            if wiring.input_size is None:
                raise InputError(f'wiring.{name}', '...', 'given without input_size')
            matrix = np.asarray(d[name])
            if matrix.shape != shape or not np.isin(matrix, (-1, 0, 1)).all():
                raise InputError(f'wiring.{name}', matrix.shape,
                                 f'must be {shape} with entries in -1, 0, +1')
            # stored matrices win over the drawn ones: a file written by an older drawing procedure
            # keeps its exact synapses
            setattr(wiring, name, matrix.astype(np.int8))
        return wiring

    def __repr__(self):
        built = f', input_size={self.input_size}' if self.is_built() else ''
        return f'{type(self).__name__}(units={self.units}, output_size={self.output_size}{built})'


class NCPWiring(Wiring):
    """Neural circuit policy: sensory -> inter -> command (recurrent) -> motor, sparse and signed.

    Args mirror ncps ``NCP``: neuron counts per layer, ``sensory_fanout`` (inter neurons each input
    feeds), ``inter_fanout`` (command neurons each inter neuron feeds), ``recurrent_command_synapses``
    (number of random command -> command synapses drawn), ``motor_fanin`` (command neurons feeding each
    motor neuron), ``seed`` for ``numpy.random.default_rng``.
    """

    kind = 'ncp'

    def __init__(self, inter_neurons, command_neurons, motor_neurons, sensory_fanout, inter_fanout,
                 recurrent_command_synapses, motor_fanin, seed=22222):
        inter = check_int('inter_neurons', inter_neurons, 1)
        command = check_int('command_neurons', command_neurons, 1)
        motor = check_int('motor_neurons', motor_neurons, 1)
        super().__init__(inter + command + motor, motor)
        self.inter_neurons, self.command_neurons, self.motor_neurons = inter, command, motor
        self.sensory_fanout = check_int('sensory_fanout', sensory_fanout, 1)
        self.inter_fanout = check_int('inter_fanout', inter_fanout, 1)
        self.recurrent_command_synapses = check_int(
            'recurrent_command_synapses', recurrent_command_synapses, 0)
        self.motor_fanin = check_int('motor_fanin', motor_fanin, 1)
        self.seed = check_int('seed', seed, 0)
        if self.sensory_fanout > inter:
            raise InputError('sensory_fanout', sensory_fanout, f'exceeds inter_neurons={inter}')
        if self.inter_fanout > command:
            raise InputError('inter_fanout', inter_fanout, f'exceeds command_neurons={command}')
        if self.motor_fanin > command:
            raise InputError('motor_fanin', motor_fanin, f'exceeds command_neurons={command}')
        # neuron ids: [motor ... | command ... | inter ...] as in ncps
        self._motor = list(range(0, motor))
        self._command = list(range(motor, motor + command))
        self._inter = list(range(motor + command, motor + command + inter))

    def layers(self):
        return [list(self._inter), list(self._command), list(self._motor)]

    def neuron_groups(self):
        return {'inter': list(self._inter), 'command': list(self._command), 'motor': list(self._motor)}

    def _config(self):
        return {'inter_neurons': self.inter_neurons, 'command_neurons': self.command_neurons,
                'motor_neurons': self.motor_neurons, 'sensory_fanout': self.sensory_fanout,
                'inter_fanout': self.inter_fanout,
                'recurrent_command_synapses': self.recurrent_command_synapses,
                'motor_fanin': self.motor_fanin, 'seed': self.seed}

    def _draw_synapses(self):
        # Same procedure and order as ncps NCP.build (sensory, inter, recurrent command, motor).
        rng = np.random.default_rng(self.seed)
        polarity = lambda: int(rng.choice([-1, 1]))  # noqa: E731
        sensory = list(range(self.input_size))

        # each input feeds exactly sensory_fanout inter neurons; unreached inter neurons then get
        # the mean fan-in
        unreached = set(self._inter)
        for src in sensory:
            for dest in rng.choice(self._inter, size=self.sensory_fanout, replace=False):
                unreached.discard(int(dest))
                self.sensory_adjacency[src, dest] = polarity()
        fanin = int(np.clip(int(self.input_size * self.sensory_fanout / self.inter_neurons),
                            1, self.input_size))
        for dest in sorted(unreached):
            for src in rng.choice(sensory, size=fanin, replace=False):
                self.sensory_adjacency[src, dest] = polarity()

        unreached = set(self._command)
        for src in self._inter:
            for dest in rng.choice(self._command, size=self.inter_fanout, replace=False):
                unreached.discard(int(dest))
                self.adjacency[src, dest] = polarity()
        # ncps clips this fan-in to the number of command (not inter) neurons; kept for parity
        fanin = int(np.clip(int(self.inter_neurons * self.inter_fanout / self.command_neurons),
                            1, self.command_neurons))
        fanin = min(fanin, self.inter_neurons)
        for dest in sorted(unreached):
            for src in rng.choice(self._inter, size=fanin, replace=False):
                self.adjacency[src, dest] = polarity()

        for _ in range(self.recurrent_command_synapses):
            src = int(rng.choice(self._command))
            dest = int(rng.choice(self._command))
            self.adjacency[src, dest] = polarity()

        unreached = set(self._command)
        for dest in self._motor:
            for src in rng.choice(self._command, size=self.motor_fanin, replace=False):
                unreached.discard(int(src))
                self.adjacency[src, dest] = polarity()
        fanout = int(np.clip(int(self.motor_neurons * self.motor_fanin / self.command_neurons),
                             1, self.motor_neurons))
        for src in sorted(unreached):
            for dest in rng.choice(self._motor, size=fanout, replace=False):
                self.adjacency[src, dest] = polarity()


def auto_ncp(units, output_size, sparsity_level=0.5, seed=22222):
    """An NCP with ncps ``AutoNCP``'s rules: 40 % of the non-motor neurons are command neurons.

    Args:
        units: total neurons (= hidden-state size); must exceed ``output_size + 2``.
        output_size: motor neurons (= outputs).
        sparsity_level: in [0.1, 1.0]; fan-outs are ``int(count * (1 - sparsity_level))`` (at least 1).
        seed: seed of the wiring's random draws.
    """
    units = check_int('units', units, 3)
    output_size = check_int('output_size', output_size, 1)
    if output_size >= units - 2:
        raise InputError('output_size', output_size, f'must be < units - 2 (units={units})')
    density = 1.0 - check_number('sparsity_level', sparsity_level, 0.1, 1.0)
    inter_and_command = units - output_size
    command = max(int(0.4 * inter_and_command), 1)
    inter = inter_and_command - command
    return NCPWiring(
        inter_neurons=inter, command_neurons=command, motor_neurons=output_size,
        sensory_fanout=max(int(inter * density), 1),
        inter_fanout=max(int(command * density), 1),
        recurrent_command_synapses=max(int(command * density * 2), 1),
        motor_fanin=max(int(command * density), 1),
        seed=seed)


class FullyConnectedWiring(Wiring):
    """Every input feeds every neuron, every neuron every neuron; polarity -1 with probability 1/3.

    The first ``output_size`` neurons are the motor (output) neurons, the rest are labelled inter.
    """

    kind = 'fully_connected'

    def __init__(self, units, output_size=None, seed=1111, self_connections=True):
        super().__init__(units, units if output_size is None else output_size)
        self.seed = check_int('seed', seed, 0)
        if not isinstance(self_connections, bool):
            raise InputError('self_connections', self_connections, 'must be a bool')
        self.self_connections = self_connections

    def layers(self):
        return [list(range(self.units))]

    def neuron_groups(self):
        return {'inter': list(range(self.output_size, self.units)), 'command': [],
                'motor': list(range(self.output_size))}

    def _config(self):
        return {'units': self.units, 'output_size': self.output_size, 'seed': self.seed,
                'self_connections': self.self_connections}

    def _draw_synapses(self):
        rng = np.random.default_rng(self.seed)
        # polarity -1 with probability 1/3, as ncps FullyConnected
        self.adjacency[:] = rng.choice(np.array([-1, 1, 1], dtype=np.int8), size=self.adjacency.shape)
        if not self.self_connections:
            np.fill_diagonal(self.adjacency, 0)
        self.sensory_adjacency[:] = rng.choice(np.array([-1, 1, 1], dtype=np.int8),
                                               size=self.sensory_adjacency.shape)


_KINDS = {cls.kind: cls for cls in (NCPWiring, FullyConnectedWiring)}


def wiring_from_dict(d):
    """Rebuild any wiring from ``to_dict()`` output (dispatches on ``d['kind']``)."""
    if not isinstance(d, dict) or d.get('kind') not in _KINDS:
        raise InputError('wiring.kind', d.get('kind') if isinstance(d, dict) else d,
                         f'must be one of {sorted(_KINDS)}')
    return _KINDS[d['kind']].from_dict(d)
