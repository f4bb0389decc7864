"""PyTorch reference of the sparsevid engine (Wan2.1 architecture + SLA2).

Module and parameter names follow the official Wan2.1 checkpoints so that
state_dict exports load directly into the C++ engine.
"""
