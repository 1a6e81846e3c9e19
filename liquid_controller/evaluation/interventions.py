"""Which safety-filter rows bind when the filter changes the command.

The filter's certificate names its active rows ``slot:limit`` (``safety.constraints.ROW_NAMES`` and
``row_labels``): ``v_upper:v_max``, ``v_upper:accel_max``, ``w_lower:a_lat_max``, ``lane_left``, ... .
They map to row types:

- ``actuator_v``: the speed box (``v_upper:v_max``, ``v_lower:v_min``);
- ``acceleration``: the speeds reachable in one period (``v_upper:accel_max``, ``v_lower:decel_max``);
- ``actuator_w``: the yaw-rate box (``w_upper:w_max``, ``w_lower:w_max``);
- ``lateral_acceleration``: ``|w| <= a_lat_max / |s|`` (``w_*:a_lat_max``) and the ``|v w|`` rows
  (``lat_pos``, ``lat_neg``);
- ``obstacle``: the braking-distance rows (``obstacle_a``, ``obstacle_b``);
- ``lane``: the soft lane rows (``lane_left``, ``lane_right``), active or relaxed (positive slack);
- ``fallback``: the filter could not solve and braked (invalid input, infeasible), no row binding;
- ``unattributed``: an intervention with no active row (does not happen with an exact solver; kept so
  the counts always add up).

An intervened step counts once under each type that binds (``by_type``: a step where both the
acceleration and the lane rows bind counts in both) and exactly once under its combination
(``by_combination``, e.g. ``acceleration+lane``), whose counts add up to the interventions.
"""
ROW_TYPES = ('actuator_v', 'acceleration', 'actuator_w', 'lateral_acceleration', 'obstacle', 'lane',
             'fallback', 'unattributed')


def row_type(label):
    """Row type of an active-row label ``slot:limit`` (see the module docstring)."""
    slot, _, limit = str(label).partition(':')
    if slot in ('v_upper', 'v_lower'):
        return 'actuator_v' if limit in ('v_max', 'v_min') else 'acceleration'
    if slot in ('w_upper', 'w_lower'):
        return 'lateral_acceleration' if limit == 'a_lat_max' else 'actuator_w'
    if slot in ('lat_pos', 'lat_neg'):
        return 'lateral_acceleration'
    if slot.startswith('obstacle'):
        return 'obstacle'
    if slot.startswith('lane'):
        return 'lane'
    raise ValueError(f'unknown safety row label {label!r}')


def binding_types(certificate):
    """Sorted row types that made the filter change the command at this certificate (empty when it
    did not intervene)."""
    if certificate is None or not certificate.intervened:
        return ()
    if certificate.fallback:
        return ('fallback',)
    types = {row_type(label) for label in certificate.active_rows}
    if any(v and v > 0 for v in (certificate.slack or {}).values()):
        types.add('lane')  # a relaxed soft row is binding too, just not with equality
    return tuple(sorted(types)) or ('unattributed',)


class InterventionCounter:
    """Counts filter steps, interventions and the binding row types over an episode."""

    def __init__(self):
        self.steps = 0
        self.interventions = 0
        self.by_type = {t: 0 for t in ROW_TYPES}
        self.by_combination = {}

    def add(self, certificate):
        """Count one filter step (a Certificate, or None when the filter did not run: not counted)."""
        if certificate is None:
            return
        self.steps += 1
        types = binding_types(certificate)
        if not types:
            return
        self.interventions += 1
        for t in types:
            self.by_type[t] += 1
        key = '+'.join(types)
        self.by_combination[key] = self.by_combination.get(key, 0) + 1

    def to_dict(self):
        """JSON-able counts: steps, interventions, by_type, by_combination."""
        return {'steps': self.steps, 'interventions': self.interventions, 'by_type': dict(self.by_type),
                'by_combination': dict(sorted(self.by_combination.items()))}
