"""Reliability suite: faults, hostile input and load, end to end through the product.

See docs/reliability.md for the scenarios, what each must show, and how to run the slow part.
"""
