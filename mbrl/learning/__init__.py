"""The learning library: replay data, dynamics models and their training, propagation of
particles through them, multi-step evaluation, checkpoints, and the adapters that let the
gradient-based solvers differentiate a learned model. Imports nothing of the rest of `mbrl`
but its errors, configs and files.
"""
