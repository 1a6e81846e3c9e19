"""Layer 2: the BarrierNet safety filter (constraint rows, exact small QP, fallback, certificates).

Knows nothing of ROS.
"""
