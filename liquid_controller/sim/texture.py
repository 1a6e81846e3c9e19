"""The track map: a procedurally painted ground texture (grass, shoulder, road, lane lines).

One textured plane draws the whole track in a single draw call, which matters on a software renderer.
The same raster holds the signed lateral offset of every texel, used for the ground-truth road mask.
"""
from dataclasses import dataclass

import numpy as np

MAP_MARGIN = 4.0  # metres of ground painted around the track's bounding box


@dataclass
class TrackMap:
    """A top-down raster of the track.

    image: (H, W, 3) uint8 RGB, row 0 at ``ymin`` (south), column 0 at ``xmin`` (west).
    offset: (H, W) float32 signed lateral offset from the centre line (m); s: (H, W) arc length (m).
    resolution: metres per texel; xmin, ymin: world coordinates of texel (0, 0)'s centre.
    """
    image: np.ndarray
    offset: np.ndarray
    s: np.ndarray
    resolution: float
    xmin: float
    ymin: float

    @property
    def size(self):
        """(width_m, height_m) covered by the raster."""
        h, w = self.offset.shape
        return w * self.resolution, h * self.resolution

    @property
    def center(self):
        """World (x, y) of the raster's centre."""
        w, h = self.size
        return self.xmin - self.resolution / 2 + w / 2, self.ymin - self.resolution / 2 + h / 2

    def lookup(self, x, y):
        """Signed lateral offset at world points (x, y arrays); NaN outside the raster."""
        col = np.round((np.asarray(x) - self.xmin) / self.resolution).astype(np.int64)
        row = np.round((np.asarray(y) - self.ymin) / self.resolution).astype(np.int64)
        h, w = self.offset.shape
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        out = np.full(np.shape(col), np.nan, dtype=np.float32)
        out[inside] = self.offset[row[inside], col[inside]]
        return out


def _smooth_noise(rng, shape, cells):
    """Low-frequency noise in [-1, 1]: a coarse random grid bilinearly upsampled to ``shape``."""
    h, w = shape
    gh, gw = max(2, int(h / cells) + 2), max(2, int(w / cells) + 2)
    grid = rng.uniform(-1, 1, size=(gh, gw))
    ys = np.linspace(0, gh - 1.001, h)
    xs = np.linspace(0, gw - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def paint_track_map(track, appearance):
    """Paint the ground texture for ``track`` with the scene's ``appearance``. Returns a TrackMap."""
    res = appearance.texture_resolution
    xmin, ymin, xmax, ymax = track.bounds(margin=track.lane_width / 2 + MAP_MARGIN)
    xs = np.arange(xmin, xmax, res)
    ys = np.arange(ymin, ymax, res)
    offset, s = track.lateral_field(xs, ys)  # (H, W) each
    rng = np.random.default_rng(appearance.texture_seed)
    h, w = offset.shape
    spec = track.spec

    def layer(color, noise, cells):
        base = np.asarray(color, dtype=np.float32)[None, None, :]
        if noise <= 0:
            return np.broadcast_to(base, (h, w, 3)).copy()
        coarse = _smooth_noise(rng, (h, w), cells)[..., None]
        fine = rng.uniform(-1, 1, size=(h, w, 1))
        return base * (1 + noise * (0.7 * coarse + 0.3 * fine))

    patch_cells = max(2.0, appearance.ground_patch_scale / res)
    image = layer(appearance.ground_color, appearance.ground_noise, patch_cells)
    a = np.abs(offset)
    half = spec.lane_width / 2

    def coverage(distance_inside):
        """Fraction of a texel inside a region, from the signed distance (m) of its centre to the
        region's edge: anti-aliased edges instead of staircases when the camera is close."""
        return np.clip(distance_inside / res + 0.5, 0.0, 1.0)[..., None]

    def blend(base, color_or_layer, alpha):
        return base * (1 - alpha) + color_or_layer * alpha

    image = blend(image, layer(appearance.shoulder_color, appearance.road_noise, 20),
                  coverage(half + spec.shoulder_width - a))
    image = blend(image, layer(appearance.road_color, appearance.road_noise, 10), coverage(half - a))
    # Edge lines sit just inside the lane boundary so the lane (between the lines' outer edges) is
    # exactly lane_width wide.
    if spec.edge_lines:
        line = np.asarray(appearance.line_color, dtype=np.float32)
        image = blend(image, line, coverage(np.minimum(a - (half - spec.line_width), half - a)))
    if spec.center_line != 'none':
        alpha = coverage(spec.line_width / 2 - a)
        if spec.center_line == 'dashed':
            phase = s % (2 * spec.dash_length)
            alpha = alpha * coverage(np.minimum(phase, spec.dash_length - phase))
        image = blend(image, np.asarray(appearance.center_line_color, dtype=np.float32), alpha)
    if appearance.exposure != 1.0:
        # Exposure scales the surface colours themselves: the renderer clamps the summed light at 1
        # before multiplying by the texture, so only brighter texels can brighten the image.
        image = image * np.float32(appearance.exposure)
    image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return TrackMap(image=image, offset=offset.astype(np.float32), s=s.astype(np.float32),
                    resolution=res, xmin=float(xs[0]), ymin=float(ys[0]))
