"""Dialogue-summary data: loading, validation and the ONE prompt definition.

Training (Axolotl, via ``datasets_fmt.axolotl_*``) and evaluation (``eval``) both build
prompts with :mod:`datasets_fmt.prompts`, so the two can never drift apart.
"""
