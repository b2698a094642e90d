"""RAIN: rewindable self-evaluating decoding (Li et al., ICLR 2024)."""
