"""DVC stage entry points and the shared pipeline library (config, data, metrics)."""
