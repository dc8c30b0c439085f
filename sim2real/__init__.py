"""Transfer from simulation to hardware.

- `safety`: the command gate between a controller and a robot's actuators (watchdog, bounds,
  e-stop, refused input), independent of ROS;
- `deployment`: a `Controller` on a robot's joint interface, run one control period at a time
  (`ControlLoop`, with planning-delay compensation);
- `ros`: the ROS 2 controller node, the simulated robot node and their MCAP logs (the
  optional `[ros]` extra);
- `cli`: `mbrl deploy ros`, `mbrl sim-robot` and `mbrl replay`.

Domain randomisation, robust planning and progressive networks come with the sim-to-real work.
Builds on `envs` (joint interfaces, `physics_params()` / `set_physics_params()`),
`controllers` and `mbrl`. Importing the package loads nothing.
"""
