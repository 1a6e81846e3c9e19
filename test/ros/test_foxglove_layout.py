"""The shipped Foxglove layouts (config/foxglove/) name only topics and fields that exist.

controller_layout.json is for the live node (node name ``controller`` in the root namespace, as the
launch file and ``liquid-controller bringup`` start it), replay_layout.json for the output bags of
``liquid-controller replay``. Every topic a panel reads must be one the node publishes (its
create_publisher calls, read from the source) or replay writes (its ReplayConfig), every message path
must be a field of that topic's message type (walked with the real rclpy message classes), and the
neuron plots must group the neurons by NCP layer with the node's names (motor0.., command0..,
inter0..) at the indices the shipped model's wiring gives them.
"""
import ast
import importlib
import inspect
import json
import re

import pytest

from liquid_controller.paths import share_dir

pytestmark = pytest.mark.ros

ROOT = share_dir()
LAYOUTS = {'live': ROOT / 'config' / 'foxglove' / 'controller_layout.json',
           'replay': ROOT / 'config' / 'foxglove' / 'replay_layout.json'}
NODE_NAME = 'controller'


def _resolve(name):
    if name.startswith('~/'):
        return f'/{NODE_NAME}/{name[2:]}'
    return name if name.startswith('/') else '/' + name


def live_topics():
    """{topic: message type} of everything the controller node publishes, from its source."""
    from liquid_controller.ros import controller_node
    tree = ast.parse(inspect.getsource(controller_node))
    topics = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, 'attr', None) == 'create_publisher':
            kind, topic = call.args[0], call.args[1]
            if isinstance(topic, ast.Subscript):  # TOPICS['cmd_vel']
                name = controller_node.TOPICS[ast.literal_eval(topic.slice)]
            else:
                name = ast.literal_eval(topic)
            if isinstance(kind, ast.Call):          # _msg('pkg.msg', 'Type')
                cls = getattr(importlib.import_module(ast.literal_eval(kind.args[0])), ast.literal_eval(kind.args[1]))
            else:                                   # the twist variable: TwistStamped by default
                from geometry_msgs.msg import TwistStamped as cls
            topics[_resolve(name)] = cls
    return topics


def replay_topics():
    """{topic: message type} of a replay output bag (computed topics + the copied camera input)."""
    from diagnostic_msgs.msg import DiagnosticStatus
    from geometry_msgs.msg import TwistStamped
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32MultiArray
    from liquid_controller.data.replay import ReplayConfig
    c = ReplayConfig()
    return {c.topic('cmd_vel'): TwistStamped, c.topic('nominal_cmd_vel'): TwistStamped,
            c.topic('safety'): DiagnosticStatus, c.topic('neurons'): Float32MultiArray,
            _resolve(c.topics.image): Image}


def panel_reads(layout):
    """[(panel id, topic, field path or '')] of every topic reference in a layout."""
    out = []
    for pid, cfg in layout['configById'].items():
        refs = [p['value'] for p in cfg.get('paths', [])]
        refs += [cfg[k] for k in ('topicPath',) if k in cfg]
        refs += [cfg['imageMode']['imageTopic']] if 'imageMode' in cfg else []
        for ref in refs:
            m = re.fullmatch(r'(/[A-Za-z0-9_/]+)(?:\.(.+))?', ref)
            assert m, f'{pid}: not a topic path: {ref!r}'
            out.append((pid, m.group(1), m.group(2) or ''))
    return out


def walk_field(cls, path):
    """Check ``a.b[3].c`` is a field path of message class ``cls``."""
    msg = cls()
    for part in path.split('.'):
        m = re.fullmatch(r'([a-z_0-9]+)(\[\d+\])?', part)
        assert m, part
        assert m.group(1) in msg.get_fields_and_field_types(), f'{cls.__name__} has no field {m.group(1)}'
        value = getattr(msg, m.group(1))
        if m.group(2):
            return  # an array element (its size is known only at run time)
        msg = value
        if not hasattr(msg, 'get_fields_and_field_types'):
            return


def mosaic_ids(node):
    if isinstance(node, str):
        return {node}
    return mosaic_ids(node['first']) | mosaic_ids(node['second'])


@pytest.mark.parametrize('kind', ['live', 'replay'])
def test_layout_topics_and_fields_exist(kind):
    layout = json.loads(LAYOUTS[kind].read_text())
    assert mosaic_ids(layout['layout']) == set(layout['configById'])   # every panel shown, none missing
    topics = live_topics() if kind == 'live' else replay_topics()
    reads = panel_reads(layout)
    assert reads
    for pid, topic, path in reads:
        assert topic in topics, f'{kind} layout panel {pid} reads {topic}, not in {sorted(topics)}'
        if path:
            walk_field(topics[topic], path)


@pytest.mark.parametrize('kind', ['live', 'replay'])
def test_layout_shows_what_the_issue_asks_for(kind):
    layout = json.loads(LAYOUTS[kind].read_text())
    cfg = layout['configById']
    reads = panel_reads(layout)
    prefix = '/controller' if kind == 'live' else '/replay'
    image = [topic for pid, topic, _ in reads if pid.startswith('Image!')]
    assert image == ([f'{prefix}/attention'] if kind == 'live' else ['/camera/image_raw'])
    commands = {(topic, path) for _, topic, path in reads if path.startswith('twist.')}
    cmd = '/cmd_vel' if kind == 'live' else '/replay/cmd_vel'
    for field in ('twist.linear.x', 'twist.angular.z'):
        assert (f'{prefix}/nominal_cmd_vel', field) in commands and (cmd, field) in commands
    assert any(topic == f'{prefix}/safety' and pid.startswith('RawMessages!') for pid, topic, _ in reads)
    assert {k for k in cfg if k.startswith('Plot!neurons_')} == {f'Plot!neurons_{g}' for g in ('motor', 'command', 'inter')}


def test_neuron_plots_group_by_layer_with_the_node_names():
    from liquid_controller.messages.diagnostics import neuron_labels
    card = json.loads((ROOT / 'models' / 'cfc.json').read_text())
    groups = card['wiring']['neuron_groups']
    names = neuron_labels(groups, sum(len(v) for v in groups.values()))
    for kind in LAYOUTS:
        cfg = json.loads(LAYOUTS[kind].read_text())['configById']
        for group, indices in groups.items():
            paths = cfg[f'Plot!neurons_{group}']['paths']
            assert [p['label'] for p in paths] == [names[i] for i in indices]
            assert [int(re.search(r'data\[(\d+)\]', p['value']).group(1)) for p in paths] == list(indices)
