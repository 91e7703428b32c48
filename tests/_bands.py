"""A FeatureSet look-alike for training tests: 4 classes, each a brighter band of the 'spectrogram' in noise."""
import numpy as np

IN = (1, 16, 24)


class Bands:
    """``n`` clips of shape :data:`IN`; class c lifts mel rows 4c..4c+3 by ``boost``. ``noise`` of the labels are
    redrawn at random (the features keep their true class)."""

    def __init__(self, n, seed, noise=0.0, boost=1.5):
        g = np.random.default_rng(seed)
        self.y = g.integers(0, 4, n).astype(np.int64)
        self.x = g.normal(0, 1, (n, *IN)).astype(np.float32)
        for i, c in enumerate(self.y):
            self.x[i, 0, 4 * c:4 * c + 4, :] += boost
        if noise:
            self.y = np.where(g.random(n) < noise, g.integers(0, 4, n), self.y).astype(np.int64)
