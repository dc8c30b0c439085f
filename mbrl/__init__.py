"""Learning for robot control: replay data, dynamics models, training, the algorithms that close
the loop, and the `mbrl` command. Builds on `envs` and `controllers`.

Importing the package loads none of its modules: import what you use (`mbrl.learning.data`,
`mbrl.algorithms.pets`, ...).
"""
