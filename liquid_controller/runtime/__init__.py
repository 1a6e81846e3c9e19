"""Layer 3: model files, preprocessing and the streaming Controller every caller drives."""
