"""What a run leaves behind: run directories with their commit points, provenance, plots and
video.
"""
