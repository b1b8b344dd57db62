"""Chat models behind `provider:model` strings: the provider registry, the embedded local
model, the shipped test model, record/replay cassettes, prices and provider errors."""
