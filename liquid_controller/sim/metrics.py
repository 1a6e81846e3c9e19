"""Closed-loop episode metrics and a reusable episode runner.

``EpisodeMetrics`` accumulates GroundTruth and commands frame by frame; ``summary()`` gives a
JSON-able dict (lap completion, lateral offset, lane departures, collisions, speed, smoothness) and
``plot(path)`` draws the driven trajectory over the track map; ``corner_breakdown()`` splits the
episode by the track's turn direction under the rover (left corner, right corner, straight).
``run_episode`` drives any
``driver_fn(observation, truth) -> (v, w)`` in a DrivingWorld and returns the metrics.
"""
import math

import numpy as np

from liquid_controller.errors import InputError

# |curvature| (1/m) above which the track under the rover counts as a corner: radius below 10 m.
CORNER_CURVATURE = 0.1
# ... and as a tight corner (radius below 2 m), where the expert slows down for lateral acceleration.
TIGHT_CORNER_CURVATURE = 0.5
CORNER_CLASSES = ('left', 'right', 'straight')


class EpisodeMetrics:
    """Accumulates one episode. ``target_laps`` (optional) scales lap_completion_pct."""

    def __init__(self, track=None, track_map=None, target_laps=None, scene_name=''):
        self.track = track
        self.track_map = track_map
        self.target_laps = target_laps
        self.scene_name = scene_name
        self._t, self._x, self._y, self._offset, self._speed = [], [], [], [], []
        self._in_lane, self._collision, self._v_cmd, self._w_cmd = [], [], [], []
        self._progress = 0.0
        self._heading = []
        self._curvature = []  # track curvature at the rover's projected position (1/m, + = left)

    def update(self, truth, command=None):
        """Record the truth at a frame and the command (v, w) applied at that frame (or None)."""
        self._t.append(float(truth.stamp))
        self._x.append(float(truth.x))
        self._y.append(float(truth.y))
        self._offset.append(float(truth.lateral_offset))
        self._heading.append(float(truth.heading_error))
        self._speed.append(float(truth.speed))
        self._in_lane.append(bool(truth.in_lane))
        self._collision.append(bool(truth.collision))
        v, w = (math.nan, math.nan) if command is None else (float(command[0]), float(command[1]))
        self._v_cmd.append(v)
        self._w_cmd.append(w)
        self._progress = float(truth.progress_laps)
        self._curvature.append(self.track.curvature_at(truth.track_s) if self.track is not None
                               else math.nan)

    @property
    def laps(self):
        """Laps driven so far (progress along the centre line)."""
        return self._progress

    @property
    def duration(self):
        """Seconds covered by the recorded frames."""
        return self._t[-1] - self._t[0] if len(self._t) > 1 else 0.0

    def summary(self):
        """JSON-able dict of the episode's metrics (SI units)."""
        n = len(self._t)
        if n == 0:
            return {'frames': 0}
        t = np.asarray(self._t)
        offset = np.abs(np.asarray(self._offset))
        in_lane = np.asarray(self._in_lane)
        collision = np.asarray(self._collision)
        dt = np.diff(t, prepend=t[0])  # (n,) time since the previous frame, 0 for the first
        departures = int(np.sum(in_lane[:-1] & ~in_lane[1:])) + int(not in_lane[0])
        collisions = int(np.sum(~collision[:-1] & collision[1:])) + int(collision[0])
        w = np.asarray(self._w_cmd)
        valid = ~np.isnan(w)
        dw = np.abs(np.diff(w[valid])) / np.maximum(np.diff(t[valid]), 1e-9) if valid.sum() > 1 else []
        completion = 100.0 * self._progress / self.target_laps if self.target_laps else \
            100.0 * self._progress
        return {
            'scene': self.scene_name,
            'frames': n,
            'duration_s': float(t[-1] - t[0]),
            'laps': float(self._progress),
            'lap_completion_pct': float(min(100.0, completion) if self.target_laps else completion),
            'mean_abs_lateral_offset_m': float(offset.mean()),
            'max_abs_lateral_offset_m': float(offset.max()),
            'mean_abs_heading_error_rad': float(np.abs(self._heading).mean()),
            'lane_departures': departures,
            'time_outside_lane_s': float(dt[~in_lane].sum()),
            'collisions': collisions,
            'mean_speed_mps': float(np.mean(self._speed)),
            'smoothness_mean_abs_dw_dt': float(np.mean(dw)) if len(dw) else 0.0,
        }

    def corner_classes(self, threshold=CORNER_CURVATURE):
        """Per frame: 'left' / 'right' where the track under the rover turns that way with
        |curvature| > threshold (1/m), else 'straight' (also when no track was given)."""
        k = np.nan_to_num(np.asarray(self._curvature, dtype=float), nan=0.0)
        return np.where(k > threshold, 'left', np.where(k < -threshold, 'right', 'straight'))

    def corner_breakdown(self, threshold=CORNER_CURVATURE):
        """The episode split by turn direction of the track under the rover (see corner_classes).

        Returns {class: {frames, seconds, lane_departures, time_outside_lane_s, mean_abs_lateral_offset_m,
        mean_speed_mps}} for 'left', 'right', 'straight' plus 'end': the class at the last frame (where
        an off-road or collision end happened) and 'tight': frames and mean speed in corners of radius
        below 2 m (either direction; they are also counted in 'left'/'right'). A departure counts in
        the class of the frame where the rover left the lane, so the classes' departures add up to the
        summary's.
        """
        n = len(self._t)
        out = {}
        if n == 0:
            return {c: {'frames': 0} for c in CORNER_CLASSES}
        cls = self.corner_classes(threshold)
        t = np.asarray(self._t)
        dt = np.diff(t, prepend=t[0])
        in_lane = np.asarray(self._in_lane)
        starts = np.zeros(n, dtype=bool)  # frames where a departure begins (as in summary())
        starts[0] = not in_lane[0]
        starts[1:] = in_lane[:-1] & ~in_lane[1:]
        offset = np.abs(np.asarray(self._offset))
        speed = np.asarray(self._speed)
        for c in CORNER_CLASSES:
            m = cls == c
            out[c] = {'frames': int(m.sum()), 'seconds': float(dt[m].sum()),
                      'lane_departures': int(starts[m].sum()),
                      'time_outside_lane_s': float(dt[m & ~in_lane].sum()),
                      'mean_abs_lateral_offset_m': float(offset[m].mean()) if m.any() else None,
                      'mean_speed_mps': float(speed[m].mean()) if m.any() else None}
        out['end'] = str(cls[-1])
        tight = np.abs(np.nan_to_num(np.asarray(self._curvature, dtype=float))) > TIGHT_CORNER_CURVATURE
        out['tight'] = {'frames': int(tight.sum()),
                        'mean_speed_mps': float(speed[tight].mean()) if tight.any() else None}
        return out

    def plot(self, path, title=None):
        """Write a PNG of the trajectory (coloured by |lateral offset|) over the track map."""
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
        if self.track_map is not None:
            tm = self.track_map
            w_m, h_m = tm.size
            x0, y0 = tm.xmin - tm.resolution / 2, tm.ymin - tm.resolution / 2
            ax.imshow(tm.image, origin='lower', extent=(x0, x0 + w_m, y0, y0 + h_m))
        elif self.track is not None:
            ax.plot(self.track.points[:, 0], self.track.points[:, 1], 'k--', lw=1)
        if self._x:
            sc = ax.scatter(self._x, self._y, c=np.abs(self._offset), s=4, cmap='plasma')
            fig.colorbar(sc, ax=ax, label='|lateral offset| (m)')
            out = ~np.asarray(self._in_lane)
            if out.any():
                ax.scatter(np.asarray(self._x)[out], np.asarray(self._y)[out], marker='x', s=12,
                           c='red', label='outside lane')
                ax.legend(loc='upper right')
            ax.plot(self._x[0], self._y[0], 'go', ms=8)
        s = self.summary()
        ax.set_title(title or f'{self.scene_name}: {s.get("laps", 0):.2f} laps, '
                     f'mean |offset| {s.get("mean_abs_lateral_offset_m", 0):.3f} m, '
                     f'departures {s.get("lane_departures", 0)}')
        ax.set_xlabel('x (m)')
        ax.set_ylabel('y (m)')
        ax.set_aspect('equal')
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path


def run_episode(world, driver_fn, scene='summer', laps=None, seconds=None, seed=0, start=0.0,
                max_seconds=600.0, stop_on_collision=False, progress=False):
    """Drive ``driver_fn(observation, truth) -> (v, w)`` in ``world`` until ``laps`` laps are
    completed or ``seconds`` of simulated time pass (give at least one; both: whichever first).

    Returns the EpisodeMetrics (with target_laps = laps). ``max_seconds`` caps a lap run that never
    finishes; ``progress`` shows a tqdm bar of simulated seconds.
    """
    if laps is None and seconds is None:
        raise InputError('laps', laps, 'give laps or seconds (or both)')
    if laps is not None and not (isinstance(laps, (int, float)) and laps > 0):
        raise InputError('laps', laps, 'must be a positive number')
    if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
        raise InputError('seconds', seconds, 'must be a positive number')
    limit = min(seconds if seconds is not None else math.inf, max_seconds)
    observation = world.reset(scene=scene, seed=seed, start=start)
    truth = world.last_truth
    metrics = EpisodeMetrics(world.track, world.track_map, target_laps=laps,
                             scene_name=world.scene.name)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=round(limit, 1) if math.isfinite(limit) else None, unit='sim s')
    while True:
        command = driver_fn(observation, truth)
        metrics.update(truth, command)
        if laps is not None and truth.progress_laps >= laps:
            break
        if truth.stamp >= limit - 1e-9 or (stop_on_collision and truth.collision):
            break
        result = world.step(command)
        observation, truth = result.observation, result.truth
        if bar is not None:
            bar.update(world.frame_period)
    if bar is not None:
        bar.close()
    return metrics
