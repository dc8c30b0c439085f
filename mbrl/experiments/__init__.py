"""Experiments on top of the library: planning on a simulator or a trained model (`mbrl plan`),
logged task data, and the planner benchmark grid.
"""
