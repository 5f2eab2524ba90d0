"""Developer and evaluation tools (the demo, `edge eval`, `edge liveness eval`): not for kiosks."""
