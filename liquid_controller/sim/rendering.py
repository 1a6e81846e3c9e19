"""Headless OpenGL backend selection (EGL, then OSMesa) and a small offscreen camera renderer.

MuJoCo's Python package picks its GL backend from ``MUJOCO_GL`` when it is first imported, and
PyOpenGL fixes its platform (``PYOPENGL_PLATFORM``) on first import too, so a failed EGL attempt
cannot be followed by OSMesa in the same process. :func:`select_gl_backend` therefore probes each
candidate in a short child process (once per process tree: the answer is kept in ``MUJOCO_GL``) and
the renderer creates its context from the chosen backend module directly, whatever ``mujoco`` chose.
"""
import os
import subprocess
import sys

import numpy as np

from liquid_controller.errors import LiquidControllerError

CANDIDATES = ('egl', 'osmesa')

_PROBE = """
import mujoco
ctx = mujoco.GLContext(16, 16)
ctx.make_current()
model = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
con.free()
ctx.free()
print('ok')
"""


class RenderBackendError(LiquidControllerError, RuntimeError):
    """No headless OpenGL backend works; the message lists each backend's failure."""


_selected = None


def _probe(backend, timeout=60.0):
    """Return None when ``backend`` renders in a fresh process, else the error text."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        out = subprocess.run([sys.executable, '-c', _PROBE], env=env, capture_output=True, text=True,
                             timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f'{type(exc).__name__}: {exc}'
    if out.returncode == 0 and out.stdout.strip().endswith('ok'):
        return None
    lines = [ln for ln in (out.stderr or out.stdout).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f'exit status {out.returncode}'


def select_gl_backend():
    """Choose the headless GL backend and export it in ``MUJOCO_GL`` / ``PYOPENGL_PLATFORM``.

    Also sets ``LP_NUM_THREADS=0`` (single-threaded llvmpipe, faster for small frames) unless set.
    Honours a ``MUJOCO_GL`` of 'egl' or 'osmesa' already set by the user (checked when the first
    context is created). Otherwise tries EGL, then OSMesa, each in a child process. Returns the name.
    Raises RenderBackendError naming both failures when neither works. Call before any rendering.
    """
    global _selected
    if _selected:
        return _selected
    preset = os.environ.get('MUJOCO_GL', '').strip().lower()
    if preset in CANDIDATES:
        _selected = preset
    else:
        failures = {}
        for backend in CANDIDATES:
            error = _probe(backend)
            if error is None:
                _selected = backend
                break
            failures[backend] = error
        if _selected is None:
            detail = '; '.join(f'{b}: {e}' for b, e in failures.items())
            raise RenderBackendError(
                'no headless OpenGL backend works for MuJoCo rendering '
                f'({detail}). EGL needs libegl1 + libgl1-mesa-dri (or a GPU driver); OSMesa needs '
                'libosmesa6. Or construct the world with render=False.')
    os.environ['MUJOCO_GL'] = _selected
    os.environ.setdefault('PYOPENGL_PLATFORM', _selected)
    # Mesa's llvmpipe splits each frame over worker threads; for 64x128 frames the hand-offs cost
    # more than they save, and on a busy 2-core machine a frame took 8 to 14 ms threaded against
    # 3.5 to 4 ms rendered in the calling thread. Read when the first context is created; a value
    # set by the user wins. GPU drivers ignore it.
    os.environ.setdefault('LP_NUM_THREADS', '0')
    return _selected


def _context_class(backend):
    if backend == 'egl':
        from mujoco.egl import GLContext
    else:
        from mujoco.osmesa import GLContext
    return GLContext


class OffscreenRenderer:
    """Renders one fixed MuJoCo camera to an RGB uint8 array, with the scene flags set for speed.

    Shadows, reflections, skybox and multisampling off (software rendering: each costs milliseconds
    per frame); fog on when ``fog`` is true. ``render(data) -> (H, W, 3) uint8``.
    """

    def __init__(self, model, camera_name, height, width, fog=True):
        import mujoco
        self._mujoco = mujoco
        backend = select_gl_backend()
        try:
            self._gl = _context_class(backend)(width, height)
            self._gl.make_current()
            self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        except Exception as exc:
            raise RenderBackendError(f'cannot create a {backend} OpenGL context: {exc}') from exc
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._scene = mujoco.MjvScene(model, maxgeom=max(64, model.ngeom + 16))
        flags = self._scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
        flags[mujoco.mjtRndFlag.mjRND_FOG] = 1 if fog else 0
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera_name)
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._buffer = np.empty((height, width, 3), dtype=np.uint8)
        self._model = model
        self.height, self.width = height, width

    def render(self, data):
        """Render the camera for the current ``data`` state. Returns a new (H, W, 3) uint8 array."""
        mj = self._mujoco
        self._gl.make_current()
        mj.mjv_updateScene(self._model, data, self._option, None, self._camera,
                           mj.mjtCatBit.mjCAT_ALL, self._scene)
        mj.mjr_render(self._rect, self._scene, self._con)
        mj.mjr_readPixels(self._buffer, None, self._rect, self._con)
        return np.flipud(self._buffer).copy()  # OpenGL rows start at the bottom

    def close(self):
        """Free the GL resources (safe to call twice)."""
        if getattr(self, '_con', None) is not None:
            self._gl.make_current()
            self._con.free()
            self._con = None
            self._gl.free()
            self._gl = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
