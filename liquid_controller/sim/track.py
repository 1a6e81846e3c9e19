"""The track's centre line as a densely sampled closed curve, with projection queries.

Built from a :class:`~liquid_controller.sim.scene.TrackSpec`: a rounded rectangle or rounded polygon
(straight edges joined by circular arcs of ``corner_radius``, or one radius per corner) or an ellipse.
The curve runs counter-clockwise, or clockwise with ``direction: cw`` (then the lap starts at the same
place and runs the other way, so its loop corners turn right); lateral offsets are positive to the
left of the direction of travel (REP-103) and curvature is positive turning left.
"""
import math

import numpy as np

from liquid_controller.errors import InputError, SceneError

SAMPLE_SPACING = 0.02  # metres between centre-line samples: well below the lane-keeping tolerances


def _wrap(angle):
    """Wrap angles to (-pi, pi]."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def _radii(radius, k):
    """One fillet radius per corner from a scalar or a sequence of k radii."""
    if np.ndim(radius) == 0:
        return [float(radius)] * k
    return [float(r) for r in radius]


def _rounded_polygon(corners, radius, spacing):
    """Sample a closed polygon whose corners are replaced by circular arcs of ``radius``.

    corners: (K, 2) counter-clockwise; radius: one radius, or K radii (one per corner). Returns (N, 2)
    points spaced about ``spacing`` apart.
    """
    corners = np.asarray(corners, dtype=float)
    k = len(corners)
    radii = _radii(radius, k)
    pieces = []
    # Tangent points of each corner's fillet: (entry point, exit point, centre, start angle, sweep).
    fillets = []
    for i in range(k):
        radius = radii[i]
        prev_pt, pt, next_pt = corners[i - 1], corners[i], corners[(i + 1) % k]
        u1 = (pt - prev_pt) / np.linalg.norm(pt - prev_pt)
        u2 = (next_pt - pt) / np.linalg.norm(next_pt - pt)
        turn = math.atan2(u1[0] * u2[1] - u1[1] * u2[0], float(np.dot(u1, u2)))  # signed turn angle
        t = radius * math.tan(abs(turn) / 2)
        entry, exit_ = pt - u1 * t, pt + u2 * t
        side = 1.0 if turn >= 0 else -1.0
        normal = np.array([-u1[1], u1[0]]) * side  # toward the arc centre
        centre = entry + normal * radius
        start = math.atan2(entry[1] - centre[1], entry[0] - centre[0])
        fillets.append((entry, exit_, centre, start, turn, t))
    for i in range(k):
        entry, exit_, centre, start, turn, t = fillets[i]
        radius = radii[i]
        if abs(turn) > 1e-9:
            n = max(2, int(math.ceil(abs(turn) * radius / spacing)))
            ang = start + np.linspace(0.0, turn, n, endpoint=False)
            pieces.append(centre + radius * np.stack([np.cos(ang), np.sin(ang)], axis=1))
        # straight edge from this corner's exit to the next corner's entry
        nxt_entry = fillets[(i + 1) % k][0]
        length = np.linalg.norm(nxt_entry - exit_)
        n = max(1, int(math.ceil(length / spacing)))
        a = np.linspace(0.0, 1.0, n, endpoint=False)[:, None]
        pieces.append(exit_ + a * (nxt_entry - exit_))
    return np.concatenate(pieces, axis=0)


def _check_fillets_fit(corners, radius, where):
    """Each edge must hold both fillets' tangent lengths, or the rounded polygon self-intersects."""
    corners = np.asarray(corners, dtype=float)
    k = len(corners)
    radii = _radii(radius, k)
    tangents = []
    for i in range(k):
        u1 = corners[i] - corners[i - 1]
        u2 = corners[(i + 1) % k] - corners[i]
        if np.linalg.norm(u1) < 1e-9 or np.linalg.norm(u2) < 1e-9:
            raise SceneError(f'{where}: track.points has repeated point {i}')
        u1, u2 = u1 / np.linalg.norm(u1), u2 / np.linalg.norm(u2)
        turn = math.atan2(u1[0] * u2[1] - u1[1] * u2[0], float(np.dot(u1, u2)))
        if abs(abs(turn) - math.pi) < 1e-3:
            raise SceneError(f'{where}: track.points[{i}] reverses direction')
        tangents.append(radii[i] * math.tan(abs(turn) / 2))
    for i in range(k):
        edge = np.linalg.norm(corners[(i + 1) % k] - corners[i])
        if tangents[i] + tangents[(i + 1) % k] > edge + 1e-9:
            what = (f'track.corner_radius={radii[i]}' if np.ndim(radius) == 0 else
                    f'track.corner_radii[{i}]={radii[i]} / [{(i + 1) % k}]={radii[(i + 1) % k]}')
            raise SceneError(f'{where}: {what}: too large for the edge from '
                             f'track.points[{i}] to track.points[{(i + 1) % k}] ({edge:.2f} m)')


class Track:
    """Closed centre line sampled every ~2 cm: positions, arc length, heading and curvature.

    Attributes: ``points (N, 2)``, ``s (N,)`` arc length at each sample, ``heading (N,)`` tangent
    direction (rad), ``curvature (N,)`` signed (1/m, positive turning left), ``length`` (m),
    ``lane_width`` (m).
    """

    def __init__(self, spec, source='<scene>'):
        self.spec = spec
        self.lane_width = spec.lane_width
        if spec.shape == 'ellipse':
            a, b = spec.length / 2, spec.width / 2
            perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
            n = int(math.ceil(perimeter / SAMPLE_SPACING))
            # Dense parameter grid, then resample at equal arc length.
            t = np.linspace(0, 2 * np.pi, 8 * n, endpoint=False)
            dense = np.stack([a * np.cos(t), b * np.sin(t)], axis=1)
            points = self._resample(dense, SAMPLE_SPACING)
            min_radius = b * b / a if a >= b else a * a / b
            if min_radius <= spec.lane_width / 2 + spec.shoulder_width:
                raise SceneError(f'{source}: track.width={spec.width}: the ellipse is too tight for '
                                 f'the lane (smallest radius {min_radius:.2f} m)')
        else:
            radius = spec.corner_radius
            if spec.shape == 'rounded_rectangle':
                hx, hy = spec.length / 2, spec.width / 2
                corners = [(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)]
            else:
                corners = spec.points
                if spec.corner_radii is not None:
                    radius = list(spec.corner_radii)
                # checked in file order, so an error names the file's point indices
                _check_fillets_fit(corners, radius, source)
                signed_area = 0.5 * sum(
                    corners[i - 1][0] * corners[i][1] - corners[i][0] * corners[i - 1][1]
                    for i in range(len(corners)))
                if signed_area < 0:  # build counter-clockwise whatever order the file lists
                    corners = corners[::-1]
                    if spec.corner_radii is not None:
                        radius = radius[::-1]
            if spec.shape == 'rounded_rectangle':
                _check_fillets_fit(corners, radius, source)
            points = _rounded_polygon(corners, radius, SAMPLE_SPACING / 4)
            # Start the lap (s = 0) in the middle of the first edge, on a straight.
            mid = (np.asarray(corners[0], float) + np.asarray(corners[1], float)) / 2
            points = np.roll(points, -int(np.argmin(((points - mid) ** 2).sum(axis=1))), axis=0)
            points = self._resample(points, SAMPLE_SPACING)
        if spec.direction == 'cw':
            # Same loop driven the other way, from the same start point: reverse the sample order
            # but keep sample 0 first, so s = 0 stays where it is for either direction.
            points = np.concatenate([points[:1], points[:0:-1]], axis=0)
        self.points = points  # (N, 2)
        seg = np.roll(points, -1, axis=0) - points  # (N, 2) segment i: point i -> i+1
        seg_len = np.linalg.norm(seg, axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg_len)[:-1]])  # (N,)
        self.length = float(seg_len.sum())
        self.heading = np.arctan2(seg[:, 1], seg[:, 0])  # (N,)
        dtheta = _wrap(np.roll(self.heading, -1) - np.roll(self.heading, 1))
        ds = np.roll(self.s, -1) - np.roll(self.s, 1)
        ds = np.where(ds <= 0, ds + self.length, ds)
        self.curvature = dtheta / ds  # (N,)
        self._seg = seg
        self._seg_len2 = np.maximum(seg_len ** 2, 1e-12)

    @staticmethod
    def _resample(points, spacing):
        """Resample a closed polyline at (nearly) equal arc length."""
        closed = np.vstack([points, points[:1]])
        d = np.linalg.norm(np.diff(closed, axis=0), axis=1)
        cum = np.concatenate([[0.0], np.cumsum(d)])
        total = cum[-1]
        n = int(round(total / spacing))
        targets = np.linspace(0.0, total, n, endpoint=False)
        x = np.interp(targets, cum, closed[:, 0])
        y = np.interp(targets, cum, closed[:, 1])
        return np.stack([x, y], axis=1)

    def bounds(self, margin=0.0):
        """(xmin, ymin, xmax, ymax) of the centre line grown by ``margin`` metres."""
        lo = self.points.min(axis=0) - margin
        hi = self.points.max(axis=0) + margin
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def index_at(self, s):
        """Index of the sample at or before arc length ``s`` (wrapped to the lap)."""
        s = float(s) % self.length
        return int(np.searchsorted(self.s, s, side='right') - 1)

    def pose_at(self, s):
        """(x, y, heading) on the centre line at arc length ``s`` (m, wrapped)."""
        s = float(s) % self.length
        i = self.index_at(s)
        frac = (s - self.s[i]) / math.sqrt(self._seg_len2[i])
        x, y = self.points[i] + frac * self._seg[i]
        return float(x), float(y), float(self.heading[i])

    def curvature_at(self, s):
        """Signed curvature (1/m) at arc length ``s``."""
        return float(self.curvature[self.index_at(s)])

    def max_abs_curvature(self, s0, s1):
        """Largest |curvature| on the arc from s0 to s1 (s1 >= s0, may exceed one lap)."""
        idx = np.arange(self.index_at(s0), self.index_at(s0) + max(1, int((s1 - s0) / SAMPLE_SPACING)) + 1)
        return float(np.abs(self.curvature[idx % len(self.s)]).max())

    def project(self, x, y):
        """Closest point on the centre line to (x, y).

        Returns (s, lateral_offset, heading): arc length of the foot point (m), signed distance (m,
        positive left of the direction of travel) and the track heading there (rad).
        """
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InputError('position', (x, y), 'must be finite')
        rel = np.array([x, y]) - self.points  # (N, 2)
        t = np.clip((rel * self._seg).sum(axis=1) / self._seg_len2, 0.0, 1.0)  # (N,)
        foot = self.points + t[:, None] * self._seg
        d2 = ((np.array([x, y]) - foot) ** 2).sum(axis=1)
        i = int(np.argmin(d2))
        seg = self._seg[i]
        r = np.array([x, y]) - foot[i]
        cross = seg[0] * r[1] - seg[1] * r[0]
        offset = math.copysign(math.sqrt(d2[i]), cross) if d2[i] > 0 else 0.0
        s = (self.s[i] + t[i] * math.sqrt(self._seg_len2[i])) % self.length
        return float(s), float(offset), float(self.heading[i])

    def lateral_field(self, xs, ys):
        """Signed lateral offset and arc length for a grid of points (for rasterising the track).

        xs (W,), ys (H,) grid coordinates; returns (offset (H, W), s (H, W)). Uses a Euclidean
        distance transform from the rasterised centre line, exact to about half a grid cell.
        """
        from scipy import ndimage  # scipy ships with scikit-learn, a runtime requirement
        h, w = len(ys), len(xs)
        res_x = (xs[-1] - xs[0]) / max(w - 1, 1)
        res_y = (ys[-1] - ys[0]) / max(h - 1, 1)
        cols = np.clip(np.round((self.points[:, 0] - xs[0]) / res_x).astype(int), 0, w - 1)
        rows = np.clip(np.round((self.points[:, 1] - ys[0]) / res_y).astype(int), 0, h - 1)
        not_centre = np.ones((h, w), dtype=bool)
        not_centre[rows, cols] = False
        sample_at = np.full((h, w), -1, dtype=np.int64)
        sample_at[rows, cols] = np.arange(len(self.points))
        _, (ir, ic) = ndimage.distance_transform_edt(not_centre, sampling=(res_y, res_x),
                                                     return_indices=True)
        idx = sample_at[ir, ic]  # (H, W) nearest centre-line sample
        gx, gy = np.meshgrid(xs, ys)
        rx = gx - self.points[idx, 0]
        ry = gy - self.points[idx, 1]
        hd = self.heading[idx]
        along = rx * np.cos(hd) + ry * np.sin(hd)
        offset = -rx * np.sin(hd) + ry * np.cos(hd)  # signed, left positive
        s = (self.s[idx] + along) % self.length
        return offset, s
