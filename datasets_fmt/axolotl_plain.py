"""Axolotl prompt strategy `type: datasets_fmt.axolotl_plain` (the 'plain' format)."""

from datasets_fmt.axolotl_strategy import loader

load = loader("plain")
