"""Chat models behind `provider:model` strings: the provider registry, the embedded local
model, the shipped test model, record/replay cassettes, prices and provider errors."""

PROVIDER_NAMES = ("openai", "anthropic", "ollama", "local", "test")
"""The providers of `provider:model` strings (`registry.PROVIDERS` holds their factories);
here, without LangChain, so validating a spec stays fast."""

WITHOUT_MODEL = ("local", "test")
"""Providers that need no model name: `local` (the embedded model), `test` (TestModel)."""
