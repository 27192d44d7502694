"""TRGL: VanGL plus the transport term (the paper's Eq. 10).

The loss is the same cross-entropy through the auxiliary classifier; only the default of
``--transport`` differs: the step adds the memory-free fused transport term
(``edgetrgl.transport``) for every objective whose transport is on, so ``--method vangl
--transport on`` trains exactly TRGL.
"""

from edgetrgl.objectives import register
from edgetrgl.objectives.vangl import VanGL


class TRGL(VanGL):
    name = "trgl"
    help = "VanGL + the transport term (1 / 2 tau) sum mean(r ** 2): the paper's method (default)"
    source = "Karkar, Ayed, de Bezenac, Gallinari, TRGL (skander-karkar/Block-wise)"
    transport = True


register(TRGL())
