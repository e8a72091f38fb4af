"""Axolotl prompt strategy `type: datasets_fmt.axolotl_chat` (the 'chat' format)."""

from datasets_fmt.axolotl_strategy import loader

load = loader("chat")
