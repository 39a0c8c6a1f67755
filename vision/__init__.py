"""Pixels to facts: frames, the ONNX detector, zones, rules, the violation taxonomy and evidence rendering.

Nothing here knows about Ray, S3 or SQL.
"""
