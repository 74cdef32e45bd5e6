"""mte: Multi-Ticket Ensembles — ensembles of different winning tickets of one pretrained transformer.

The science core (data, models, masks, pruning, training, lottery, metrics, ensembles) is plain
PyTorch/NumPy; orchestration (`sweeps`) and tracking (`tracking`) live outside it.
"""

__version__ = "0.1.0"
