"""VanGL: plain greedy training, cross-entropy through each module's auxiliary classifier.

The TRGL paper's baseline: TRGL without the transport term. The network's
own heads are the classifiers (``edgetrgl.heads``: DGL's "1CNN" for conv features).
"""

from edgetrgl.objectives import register
from edgetrgl.objectives.base import Objective


class VanGL(Objective):
    name = "vangl"
    help = "cross-entropy through each module's auxiliary classifier (plain greedy training)"
    source = "Karkar et al., TRGL paper's baseline (skander-karkar/Block-wise)"
    plain_heads = True


register(VanGL())
