"""The algorithms that close the loop: collect, fit, plan and act, log."""
