"""Frames shared by the torch and the torch-free processes of test_onnx_backend.py (numpy only)."""
import numpy as np

from liquid_controller.runtime.preprocess import ImuWindow

STEPS = 70


def synthetic_inputs(steps=STEPS, seed=3):
    """(frame (64, 128, 3) uint8, stamp s, IMU window, measured speed) per step: smooth random images,
    irregular frame gaps (12 ms .. 0.15 s, one 0.8 s gap that resets the hidden state), 4 IMU
    samples per frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (64, 128, 3)).astype(np.float64)
    stamp = 0.0
    for i in range(steps):
        gap = 0.8 if i == steps // 2 else float(rng.uniform(0.012, 0.15))
        stamp += gap
        shift = np.roll(base, i * 3, axis=1) * 0.7 + rng.integers(0, 77, (64, 128, 3))
        frame = np.clip(shift, 0, 255).astype(np.uint8)
        t = stamp - gap * np.array([0.75, 0.5, 0.25, 0.0])
        gyro = rng.normal(0.0, 0.3, (4, 3))
        accel = rng.normal(0.0, 0.5, (4, 3)) + np.array([0.0, 0.0, 9.81])
        yield frame, stamp, ImuWindow(t, gyro, accel), float(min(0.1 * i, 1.5))
