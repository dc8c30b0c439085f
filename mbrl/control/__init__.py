"""Building controllers and running them: the planner registry (every planner by name, one set
of defaults) and the one episode loop that every algorithm, experiment and benchmark runs.
"""
