"""Renderer backend selection: EGL, then OSMesa, with an error naming both when neither works."""
import pytest

from liquid_controller.sim import rendering


def test_probe_reports_a_working_backend_and_a_broken_one():
    # Real child processes: this machine renders with at least one of EGL / OSMesa, and an invalid
    # MUJOCO_GL value fails inside mujoco with a message we pass on.
    results = {b: rendering._probe(b) for b in rendering.CANDIDATES}
    assert any(error is None for error in results.values()), results
    error = rendering._probe('no-such-backend')
    assert error is not None and 'MUJOCO_GL' in error


def test_selection_prefers_egl_then_osmesa_and_names_both_failures(monkeypatch):
    # Mock: a machine where EGL (or both backends) cannot render cannot be produced here, so the
    # probe's answers are substituted; the selection logic and the environment it sets are real.
    monkeypatch.setattr(rendering, '_selected', None)
    monkeypatch.setenv('MUJOCO_GL', '')  # recorded, so the value select sets is undone afterwards
    monkeypatch.setenv('PYOPENGL_PLATFORM', 'x')  # keep the process's own setting untouched
    tried = []

    def egl_broken(backend, timeout=60.0):
        tried.append(backend)
        return 'EGL: eglInitialize failed' if backend == 'egl' else None
    monkeypatch.setattr(rendering, '_probe', egl_broken)
    assert rendering.select_gl_backend() == 'osmesa'
    assert tried == ['egl', 'osmesa']
    import os
    assert os.environ['MUJOCO_GL'] == 'osmesa'

    monkeypatch.setattr(rendering, '_selected', None)
    monkeypatch.setenv('MUJOCO_GL', '')  # recorded, so the value select sets is undone afterwards
    monkeypatch.setattr(rendering, '_probe', lambda b, timeout=60.0: f'{b} library missing')
    with pytest.raises(rendering.RenderBackendError) as info:
        rendering.select_gl_backend()
    assert 'egl: egl library missing' in str(info.value)
    assert 'osmesa: osmesa library missing' in str(info.value)


def test_user_choice_is_honoured(monkeypatch):
    monkeypatch.setattr(rendering, '_selected', None)
    monkeypatch.setenv('MUJOCO_GL', 'osmesa')
    monkeypatch.setenv('PYOPENGL_PLATFORM', 'osmesa')
    monkeypatch.setattr(rendering, '_probe', lambda b, timeout=60.0: pytest.fail('probed'))
    assert rendering.select_gl_backend() == 'osmesa'
