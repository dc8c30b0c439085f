"""ROS 2 deployment: the controller node, the simulated robot node and their MCAP logs.

Everything here needs the optional extra (`pip install -e ".[ros]"`: rclpy, std_msgs,
sensor_msgs and mcap as pip wheels), and nothing else of the toolkit imports it. Importing
this package loads no ROS library; `dds.require_ros()` says in one line what to install.
"""
