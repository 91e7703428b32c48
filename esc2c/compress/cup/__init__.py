"""CUP: cluster pruning (Duggal et al. 2021) of an ESCNet into a smaller dense ESCNet.

1. Channel groups. Walking the model finds every set of channels that must be pruned together: the output
   channels of one conv (or hidden FC layer), or, in a ResNet, all channels tied by identity shortcuts (the
   stem and the second conv of every block of a stage that keeps its width form one group). Each group knows
   its producers (layers whose outputs are these channels) and its consumers (layers reading them: the next
   conv, a block's projection shortcut, the head's first FC after global pooling, and aux heads).
2. Filter features. Channel c of a group is described by, for each producer, the L2 norms over the kernel
   taps of its incoming weights per input channel (BN scale gamma/sqrt(var+eps) folded in, so the feature
   reflects what the channel outputs), concatenated with, for each deployed consumer, the L2 norms over the
   taps of its outgoing weights per next-layer filter. Aux heads are sliced but do not vote: they are removed
   after training.
3. Normalisation, so one threshold serves all layers: each of those blocks (one per producer or consumer) is
   centred on its mean row and divided by its RMS deviation, and the concatenation by sqrt(number of blocks).
   Norm features are positive and share a common profile; what tells filters apart is their deviation from
   it. After this, in every layer the mean squared distance of a channel to the layer's mean is 1 whatever
   its fan-in, fan-out or weight scale, so a distance t means the same everywhere, and a layer is pruned
   harder when its filters sit in tighter clusters than its own spread (or when it has many filters).
4. Clustering. Per group, agglomerative hierarchical clustering (scipy linkage, Ward by default) cut at the
   global distance t (every merge of height <= t applied); one representative per cluster is kept, the channel
   with the largest importance: the norm of its features with each block divided by its mean row norm
   (uncentred). t = 0 merges nothing (unless two channels are exact duplicates).
5. Surgery. Kept channels are copied into a freshly built model: conv filters, BN channels, the consumers'
   input slices (next convs, shortcuts, FC columns, aux-head convs). The result is dense: no masks.

``prune_to_ratio`` / ``prune_to_params`` hit a requested fraction or size of the deployed parameters (aux
heads excluded) within 0.5 %, optionally with kernel-friendly widths; ``prune_until`` finds the least pruning
that meets a test such as a board budget (``search.py``).

Modules: ``groups`` (step 1), ``clustering`` (steps 2-4), ``surgery`` (step 5), ``search`` (how much to
prune), ``plots`` (the paper's Fig. 5 and 6).
"""
from esc2c.compress.cup.clustering import Clustering, cluster, cut, group_features
from esc2c.compress.cup.groups import ChannelGroup, channel_groups
from esc2c.compress.cup.plots import plot_accuracy_vs_ratio, plot_widths
from esc2c.compress.cup.search import (DEFAULT_TOL, PLAIN, Walk, Widths, prune, prune_to_params, prune_to_ratio,
                                       prune_until, ratio_sweep)
from esc2c.compress.cup.surgery import PruneResult, apply_keep

__all__ = ["ChannelGroup", "Clustering", "DEFAULT_TOL", "PLAIN", "PruneResult", "Walk", "Widths", "apply_keep",
           "channel_groups", "cluster", "cut", "group_features", "plot_accuracy_vs_ratio", "plot_widths", "prune",
           "prune_to_params", "prune_to_ratio", "prune_until", "ratio_sweep"]
