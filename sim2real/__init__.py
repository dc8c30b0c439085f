"""Transfer from simulation to hardware: domain randomisation, progressive networks, ROS bridge.

Builds on `envs` (whose `physics_params()` / `set_physics_params()` are the knobs domain
randomisation turns), `controllers` and `mbrl`. Its components arrive with the sim-to-real work;
until then the package holds the place the dependency contract in setup.cfg names.
"""
