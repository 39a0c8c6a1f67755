"""Model files and their cards: the shipped default detector (`default/`), the script that builds it
(`make_default`), and later export, evaluation and the registry.

Heavy dependencies (onnx, ultralytics, torch) are imported inside functions only, so importing this package
costs nothing on the serving path.
"""
