"""The trade chain: fruit trades per plot, peel lots, corrections and plausibility alerts."""
