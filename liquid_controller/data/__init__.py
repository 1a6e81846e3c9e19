"""Layer 6: rosbag2 reading and writing, datasets of time-stamped sequences."""
