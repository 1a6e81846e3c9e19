"""Message builders for the controller node's debug and diagnostics topics (no maths, packing only).

Layouts (documented here and in config/controller.yaml):

- ``~/safety``: diagnostic_msgs/DiagnosticStatus. ``level`` OK (filter passed the command through),
  WARN (the filter changed it), ERROR (braking / fallback / bad input); ``message`` = controller status
  and reason; ``values`` = the certificate's fields as KeyValue pairs, each value JSON-encoded
  (numbers, lists, strings), plus ``command`` and ``nominal``. A reader does
  ``{kv.key: json.loads(kv.value) for kv in msg.values}``.
- ``~/neurons``: std_msgs/Float32MultiArray, one dimension of size S whose ``label`` is
  ``neurons:`` followed by a comma-separated name per state entry (``motor0,motor1,command0,...``,
  in state order), so the layout is self-describing.
- ``/diagnostics``: diagnostic_msgs/DiagnosticArray with one status named ``<node name>: controller``.
"""
from __future__ import annotations

import json
import math

import numpy as np

NEURON_LABEL_PREFIX = 'neurons:'


def _json_value(value):
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(str(value))
    try:
        return json.dumps(value, default=_json_default, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(str(value))


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return str(obj)


def key_values(mapping):
    """dict -> list of diagnostic_msgs/KeyValue with JSON-encoded values."""
    from diagnostic_msgs.msg import KeyValue
    return [KeyValue(key=str(k), value=_json_value(v)) for k, v in mapping.items()]


def neuron_labels(groups, size):
    """Names for each of ``size`` state entries from the policy's neuron groups (index lists)."""
    names = [f'n{i}' for i in range(size)]
    for group, indices in groups.items():
        for j, i in enumerate(sorted(indices)):
            if 0 <= i < size:
                names[i] = f'{group}{j}'
    return names


def neurons_message(values, labels):
    """(S,) float array + S labels -> std_msgs/Float32MultiArray with a labelled dimension."""
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    msg = Float32MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=NEURON_LABEL_PREFIX + ','.join(labels),
                                          size=int(arr.size), stride=int(arr.size))]
    msg.data = arr.tolist()
    return msg


def ood_message(score):
    """The OOD monitor's score of one frame (smoothed Mahalanobis d2 / calibrated threshold: above 1
    means beyond the stated quantile of training frames) -> std_msgs/Float32."""
    from std_msgs.msg import Float32
    return Float32(data=float(score))


def parse_neurons_message(msg):
    """Inverse of :func:`neurons_message`: {label: value}."""
    label = msg.layout.dim[0].label
    if not label.startswith(NEURON_LABEL_PREFIX):
        raise ValueError(f'not a neurons layout: {label[:40]!r}')
    names = label[len(NEURON_LABEL_PREFIX):].split(',') if len(msg.data) else []
    return dict(zip(names, [float(v) for v in msg.data]))


def safety_status(name, output):
    """ControllerOutput -> diagnostic_msgs/DiagnosticStatus carrying the certificate."""
    from diagnostic_msgs.msg import DiagnosticStatus
    level = DiagnosticStatus.OK
    if output.safe:
        level = DiagnosticStatus.ERROR
    elif output.intervened:
        level = DiagnosticStatus.WARN
    values = {'status': output.status, 'reason': output.reason,
              'command': output.command, 'nominal': output.nominal, 'dt': output.dt,
              'ood_score': output.ood_score}
    for k, v in output.certificate_dict().items():
        values[f'certificate.{k}'] = v
    message = output.status if not output.reason else f'{output.status}: {output.reason}'
    return DiagnosticStatus(level=level, name=name, message=message[:250], hardware_id='',
                            values=key_values(values))


def parse_key_values(status):
    """DiagnosticStatus values -> {key: decoded JSON value}."""
    out = {}
    for kv in status.values:
        try:
            out[kv.key] = json.loads(kv.value)
        except ValueError:
            out[kv.key] = kv.value
    return out


def diagnostic_array(stamp_msg, statuses):
    """List of DiagnosticStatus -> DiagnosticArray stamped ``stamp_msg`` (builtin_interfaces/Time)."""
    from diagnostic_msgs.msg import DiagnosticArray
    msg = DiagnosticArray()
    msg.header.stamp = stamp_msg
    msg.status = list(statuses)
    return msg
