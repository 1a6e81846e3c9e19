"""Layer 5: the embedded MuJoCo driving world, expert driver and episode metrics (ROS-free)."""
