"""Layer 1: PyTorch modules. Liquid cells (CfC, LTC), NCP wiring, perception head, full policy.

Knows nothing of ROS, files or the simulator.
"""
