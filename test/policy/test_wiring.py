"""NCP / fully connected wirings: structure, AutoNCP rules, reproducibility, dict round trip."""
import json

import numpy as np
import pytest

from liquid_controller.errors import InputError
from liquid_controller.policy.wiring import (FullyConnectedWiring, NCPWiring, auto_ncp,
                                             wiring_from_dict)


def _built(units=19, outputs=2, inputs=32, seed=22222, sparsity=0.5):
    return auto_ncp(units, outputs, sparsity_level=sparsity, seed=seed).build(inputs)


@pytest.mark.parametrize('units,outputs,sparsity', [(19, 2, 0.5), (34, 4, 0.5), (12, 1, 0.2),
                                                    (50, 10, 0.8)])
def test_auto_ncp_counts_follow_ncps(units, outputs, sparsity):
    from ncps.wirings import AutoNCP  # reference rules (test-only dependency)
    ref = AutoNCP(units, outputs, sparsity_level=sparsity)
    ours = auto_ncp(units, outputs, sparsity_level=sparsity)
    assert (ours.inter_neurons, ours.command_neurons, ours.motor_neurons) == (
        ref._num_inter_neurons, ref._num_command_neurons, ref._num_motor_neurons)
    assert (ours.sensory_fanout, ours.inter_fanout, ours.recurrent_command_synapses,
            ours.motor_fanin) == (ref._sensory_fanout, ref._inter_fanout,
                                  ref._recurrent_command_synapses, ref._motor_fanin)
    assert ours.layers() == [ref.get_neurons_of_layer(i) for i in range(3)]


def test_ncp_structure():
    w = _built()
    groups = w.neuron_groups()
    inter, command, motor = groups['inter'], groups['command'], groups['motor']
    assert motor == [0, 1] and command == list(range(2, 8)) and inter == list(range(8, 19))
    assert sorted(inter + command + motor) == list(range(w.units))
    sens, adj = w.sensory_adjacency, w.adjacency
    assert sens.shape == (32, 19) and adj.shape == (19, 19)
    assert set(np.unique(sens)) <= {-1, 0, 1} and set(np.unique(adj)) <= {-1, 0, 1}
    # inputs only reach inter neurons; each input feeds sensory_fanout of them
    assert not sens[:, command + motor].any()
    assert np.all(np.count_nonzero(sens[:, inter], axis=1) >= w.sensory_fanout)
    # every inter neuron is reached, every command neuron has an inter input, every motor neuron
    # motor_fanin command inputs, every command neuron reaches a motor neuron
    assert np.all(np.count_nonzero(sens[:, inter], axis=0) >= 1)
    assert np.all(np.count_nonzero(adj[np.ix_(inter, command)], axis=0) >= 1)
    assert np.all(np.count_nonzero(adj[np.ix_(command, motor)], axis=0) >= w.motor_fanin)
    assert np.all(np.count_nonzero(adj[np.ix_(command, motor)], axis=1) >= 1)
    # only the allowed blocks are wired: inter->command, command->command, command->motor
    allowed = np.zeros_like(adj, dtype=bool)
    allowed[np.ix_(inter, command)] = True
    allowed[np.ix_(command, command)] = True
    allowed[np.ix_(command, motor)] = True
    assert not adj[~allowed].any()
    assert np.count_nonzero(adj[np.ix_(command, command)]) >= 1  # recurrent command synapses
    # both polarities occur
    assert (adj == -1).any() and (adj == 1).any() and (sens == -1).any()
    assert w.synapse_count == np.count_nonzero(adj)


def test_seed_reproducible_and_seed_sensitive():
    a, b, c = _built(seed=5), _built(seed=5), _built(seed=6)
    assert np.array_equal(a.adjacency, b.adjacency)
    assert np.array_equal(a.sensory_adjacency, b.sensory_adjacency)
    assert not (np.array_equal(a.adjacency, c.adjacency)
                and np.array_equal(a.sensory_adjacency, c.sensory_adjacency))


def test_sparsity_controls_density():
    dense, sparse = _built(units=40, outputs=4, sparsity=0.2), _built(units=40, outputs=4,
                                                                     sparsity=0.8)
    assert dense.synapse_count > sparse.synapse_count
    assert dense.sensory_synapse_count > sparse.sensory_synapse_count


@pytest.mark.parametrize('wiring', [
    lambda: _built(seed=3),
    lambda: auto_ncp(19, 2, seed=3),  # not built yet
    lambda: FullyConnectedWiring(6, 2, seed=4, self_connections=False).build(5),
    lambda: NCPWiring(5, 4, 2, 3, 2, 3, 2, seed=9).build(7),
])
def test_dict_round_trip(wiring):
    w = wiring()
    d = json.loads(json.dumps(w.to_dict()))  # must survive JSON
    back = wiring_from_dict(d)
    assert type(back) is type(w)
    assert back.to_dict() == w.to_dict()
    assert back.units == w.units and back.output_size == w.output_size
    if w.is_built():
        assert np.array_equal(back.adjacency, w.adjacency)
        assert np.array_equal(back.sensory_adjacency, w.sensory_adjacency)
    assert back.neuron_groups() == w.neuron_groups()


def test_stored_matrices_win_over_drawn_ones():
    w = _built(seed=3)
    d = w.to_dict()
    d['adjacency'][8][2] = -d['adjacency'][8][2] or 1  # edit one synapse
    back = wiring_from_dict(d)
    assert back.adjacency[8, 2] == d['adjacency'][8][2]
    assert not np.array_equal(back.adjacency, w.adjacency)


def test_fully_connected():
    w = FullyConnectedWiring(10, 3, seed=1).build(4)
    assert np.all(w.adjacency != 0) and np.all(w.sensory_adjacency != 0)
    assert 0.15 < np.mean(w.adjacency == -1) < 0.55  # polarity -1 with probability 1/3
    assert w.neuron_groups() == {'inter': list(range(3, 10)), 'command': [], 'motor': [0, 1, 2]}
    assert w.layers() == [list(range(10))]
    no_self = FullyConnectedWiring(10, seed=1, self_connections=False).build(4)
    assert np.all(np.diag(no_self.adjacency) == 0) and no_self.output_size == 10


def test_build_is_idempotent_and_rejects_other_size():
    w = _built(inputs=32)
    before = w.sensory_adjacency.copy()
    w.build(32)
    assert np.array_equal(w.sensory_adjacency, before)
    with pytest.raises(InputError, match='input_size=16'):
        w.build(16)


@pytest.mark.parametrize('make,name', [
    (lambda: auto_ncp(5, 3), 'output_size'),
    (lambda: auto_ncp(19, 2, sparsity_level=0.05), 'sparsity_level'),
    (lambda: auto_ncp(19, 2, sparsity_level='high'), 'sparsity_level'),
    (lambda: auto_ncp(19.5, 2), 'units'),
    (lambda: auto_ncp(19, 2, seed=-1), 'seed'),
    (lambda: NCPWiring(5, 4, 2, 6, 2, 3, 2), 'sensory_fanout'),
    (lambda: NCPWiring(5, 4, 2, 3, 5, 3, 2), 'inter_fanout'),
    (lambda: NCPWiring(5, 4, 2, 3, 2, 3, 5), 'motor_fanin'),
    (lambda: NCPWiring(0, 4, 2, 3, 2, 3, 2), 'inter_neurons'),
    (lambda: FullyConnectedWiring(4, 5), 'output_size'),
    (lambda: auto_ncp(19, 2).build(0), 'input_size'),
    (lambda: wiring_from_dict({'kind': 'mystery'}), 'wiring.kind'),
    (lambda: wiring_from_dict({**_built().to_dict(), 'adjacency': [[0]]}), 'wiring.adjacency'),
])
def test_bad_arguments_raise_input_error(make, name):
    with pytest.raises(InputError) as info:
        make()
    assert info.value.name == name
    assert isinstance(info.value, ValueError)
