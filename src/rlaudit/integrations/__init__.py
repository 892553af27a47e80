"""Bridges to other tools: importers of other trajectory formats, and training-library callbacks.

Integrations may use the recorder, the schema and the store layout; they never
import the analyser, detectors, reports or the CLI. Optional packages
(minari, tensorboard, stable-baselines3) are imported inside the functions
that need them, with an install hint when they are missing.
"""
