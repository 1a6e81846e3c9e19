"""FrameAssembler: IMU windowing strictly by stamp, one freshness rule, bounded buffers, clock skew."""
import numpy as np
import pytest

from liquid_controller.errors import InputError
from liquid_controller.runtime.frame_assembler import FrameAssembler


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def add(asm, stamps, gz=0.0):
    for s in stamps:
        asm.add_imu(s, (0.0, 0.0, gz), (0.0, 0.0, 9.81))


def test_windows_are_cut_by_stamp_and_late_samples_join_the_next():
    asm = FrameAssembler(0.2, clock=FakeClock())
    add(asm, [0.9, 0.95, 1.0, 1.01, 1.02, 1.03])
    first = asm.assemble(1.0)                 # first frame: (stamp - max_window, stamp]
    np.testing.assert_array_equal(first.imu.stamps, [0.9, 0.95, 1.0])
    add(asm, [1.0333])
    second = asm.assemble(1.0333)             # on time: exactly (previous frame, stamp]
    np.testing.assert_array_equal(second.imu.stamps, [1.01, 1.02, 1.03, 1.0333])
    # a sample stamped before the processed frame arrives late: it is not lost
    add(asm, [1.02])
    assert asm.counters['late_imu'] == 1
    np.testing.assert_array_equal(asm.assemble(1.0666).imu.stamps, [1.02])
    add(asm, [0.85])                           # older than max_window before the next frame: unused
    assert len(asm.assemble(1.1).imu) == 0


def test_arrival_order_does_not_change_the_window():
    a, b = FrameAssembler(0.2, clock=FakeClock()), FrameAssembler(0.2, clock=FakeClock())
    stamps = [0.95, 0.96, 0.97, 0.98, 0.99, 1.0]
    add(a, stamps)
    add(b, stamps[::-1])
    np.testing.assert_array_equal(a.assemble(1.0).imu.stamps, b.assemble(1.0).imu.stamps)


def test_full_buffer_drops_the_oldest_and_late_samples_never_raise():
    """The old node used deque(maxlen).insert, which raises IndexError once full (camera silent for
    20 s at 200 Hz, then one out-of-order sample): the node died."""
    asm = FrameAssembler(0.2, imu_capacity=4000, clock=FakeClock())
    add(asm, np.arange(4100) * 0.005)
    assert len(asm) == 4000 and asm.counters['imu_dropped_full'] == 100
    add(asm, [20.4901, 20.4801])               # late, out of order, inside a full buffer
    assert len(asm) == 4000 and asm.counters['imu_dropped_full'] == 102
    window = asm.assemble(20.5).imu
    assert len(window) > 0 and np.all(np.diff(window.stamps) >= 0)


def test_one_freshness_rule_for_odometry_range_and_scan():
    asm = FrameAssembler(0.2, measurement_max_age=0.5, clock=FakeClock())
    asm.set_reading('odom', 9.6, 1.2)
    asm.set_reading('range', 10.0, 3.0)
    asm.set_reading('scan', 9.0, 0.5)         # 1 s old at the frame: not used
    got = asm.assemble(10.0)
    assert got.speed == 1.2 and got.range == 3.0
    asm.set_reading('scan', 10.0, 0.5)
    assert asm.assemble(10.03).range == 0.5     # nearer of range and scan
    asm.clock = lambda: 100.0                    # odometry stopped arriving (no skew, just old)
    assert asm.assemble(10.7).speed is None     # odometry 1.1 s old


def test_clock_skew_between_camera_and_live_imu_or_odometry_is_named():
    clock = FakeClock()
    asm = FrameAssembler(0.2, max_clock_skew=0.5, clock=clock)
    add(asm, [110.0, 110.005])                  # IMU 10 s ahead of the camera, arriving now
    with pytest.raises(InputError, match='clock skew.*imu'):
        asm.assemble(100.0)
    clock.t = 5.0                                # the IMU stopped arriving: not skew (imu_timeout's job)
    asm.assemble(100.0)
    asm2 = FrameAssembler(0.2, max_clock_skew=0.5, clock=clock)
    asm2.set_reading('odom', 90.0, 1.0)
    with pytest.raises(InputError, match='clock skew.*odom'):
        asm2.assemble(100.0)


def test_imu_clock_restart_clears_the_buffer():
    asm = FrameAssembler(0.2, clock=FakeClock())
    add(asm, [50.0, 50.01])
    asm.assemble(50.01)
    add(asm, [0.01, 0.02, 0.03])                 # bag loop: the IMU clock starts again
    assert asm.counters['imu_clock_resets'] == 1
    asm.assemble(0.001)                          # camera went back too: new window
    add(asm, [0.04])
    np.testing.assert_array_equal(asm.assemble(0.04).imu.stamps, [0.01, 0.02, 0.03, 0.04])


def test_invalid_settings_are_named():
    with pytest.raises(InputError, match='max_window'):
        FrameAssembler(0.0)
    with pytest.raises(InputError, match='imu_capacity'):
        FrameAssembler(0.2, imu_capacity=0)


def test_first_sensor_error_since_the_last_frame_goes_to_the_next_frame_once():
    asm = FrameAssembler(0.2, clock=FakeClock())
    asm.report_error("imu: angular_velocity.x='nan': must be finite")
    asm.report_error('odom: twist.linear.x: must be finite')      # a later one does not replace it
    assert asm.assemble(1.0).error.startswith('imu: angular_velocity.x')
    assert asm.assemble(1.03).error is None
