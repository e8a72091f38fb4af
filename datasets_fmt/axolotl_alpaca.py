"""Axolotl prompt strategy `type: datasets_fmt.axolotl_alpaca` (the 'alpaca' format)."""

from datasets_fmt.axolotl_strategy import loader

load = loader("alpaca")
